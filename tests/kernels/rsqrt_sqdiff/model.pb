
2
aPlaceholder*
dtype0*
shape
:
.
bPlaceholder*
dtype0*
shape:

RsqrtRsqrta*
T0
5
SquaredDifferenceSquaredDifferenceab*
T0
/
addAddV2RsqrtSquaredDifference*
T0
 
outputIdentityadd*
T0"ª