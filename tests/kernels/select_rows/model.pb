
.
cPlaceholder*
shape:*
dtype0

2
aPlaceholder*
shape
:*
dtype0
2
bPlaceholder*
dtype0*
shape
:
"
SelectSelectcab*
T0
#
outputIdentitySelect*
T0"ª