//! Process pools for multiproc. Helper F fills this in.
