# Mask generators and evaluation; their tests.
