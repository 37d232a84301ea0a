//! Processes for multiproc. Helper D fills this in.
