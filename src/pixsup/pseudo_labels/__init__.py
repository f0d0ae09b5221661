"""From CAMs to full pseudo masks: confident labels, dense CRF, IRN's boundary random walk."""
