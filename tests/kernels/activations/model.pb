
2
xPlaceholder*
dtype0*
shape
:

Relu6Relu6x*
T0

SigmoidSigmoidx*
T0

TanhTanhx*
T0
"
mulMulSigmoidTanh*
T0
!
addAddV2Relu6mul*
T0
 
outputIdentityadd*
T0"ª