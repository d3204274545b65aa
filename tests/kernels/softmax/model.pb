
2
xPlaceholder*
shape
:*
dtype0

SoftmaxSoftmaxx*
T0
$
outputIdentitySoftmax*
T0"ª