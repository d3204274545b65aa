
:
xPlaceholder*
shape:	*
dtype0
s
	AvgPool2DAvgPoolx*
paddingVALID*
data_formatNHWC*
T0*
strides
*
ksize

&
outputIdentity	AvgPool2D*
T0"ª