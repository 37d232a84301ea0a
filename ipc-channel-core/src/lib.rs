//! Messaging for multiproc. Helper C fills this in.
