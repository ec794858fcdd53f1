"""Entry points: the only package of the shared kernel that imports the parts."""
