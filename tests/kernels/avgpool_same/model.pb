
:
xPlaceholder*
dtype0*
shape:	
r
	AvgPool2DAvgPoolx*
paddingSAME*
data_formatNHWC*
T0*
ksize
*
strides

&
outputIdentity	AvgPool2D*
T0"ª