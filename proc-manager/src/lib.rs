//! Managers for multiproc: a server process owning shared objects, and typed proxies to them, local and remote
