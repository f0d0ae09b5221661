"""Where and how steps run: the device, multi-process groups and their launcher, GPU slots of a
local box, and the parallel maps of the per-image steps."""
