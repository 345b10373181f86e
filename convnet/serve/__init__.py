"""`convnet serve`: a web page where a user draws a digit and watches LeNet-5 see it."""
