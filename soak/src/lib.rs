//! The fault, soak and hostile-input suite of multiproc
