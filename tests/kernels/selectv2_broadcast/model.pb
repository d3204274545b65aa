
2
cPlaceholder*
shape
:*
dtype0

2
aPlaceholder*
shape
:*
dtype0
.
bPlaceholder*
dtype0*
shape:
&
SelectV2SelectV2cab*
T0
%
outputIdentitySelectV2*
T0"ª