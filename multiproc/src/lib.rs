//! multiproc facade (being written).
