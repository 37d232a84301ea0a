//! Process-shared synchronization for multiproc. Helper B fills this in.
