
2
aPlaceholder*
shape
:*
dtype0
2
bPlaceholder*
shape
:*
dtype0
1
stackPackab*
N*

axis*
T0
"
outputIdentitystack*
T0"ª