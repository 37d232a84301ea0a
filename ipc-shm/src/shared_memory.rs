//! [`SharedMemory`]: named POSIX shared memory (Python's `shared_memory.SharedMemory`).

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};
use rustix::io::Errno;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;
use crate::segment::check_range;
use crate::sys;
use crate::tracker::{self, ObjectId, NAME_MAX};
use crate::transfer::{self, TransferError};

/// A named shared memory object (`/dev/shm/<name>`): Python's
/// `multiprocessing.shared_memory.SharedMemory`.
///
/// [`create`](SharedMemory::create) makes a new object (mode 0600, never reusing an existing
/// name); [`open`](SharedMemory::open) attaches to one by name, from any process. The creator
/// is the only one responsible for the name: if it dies (normal exit, panic, SIGKILL) without
/// calling [`unlink`](SharedMemory::unlink), the resource tracker unlinks the name for it,
/// unless it called [`keep`](SharedMemory::keep). A process that merely attached never
/// removes the name (unlike Python's tracker, gh-82300). Unlinking removes the name only:
/// processes that map the memory keep using it.
///
/// `Clone` is another handle to the same mapping. The handle also travels by handle transfer
/// (`Serialize + Deserialize` through [`transfer`](crate::transfer)): the receiver gets the
/// descriptor itself, attaches (it is not the creator), and works even after the name was
/// unlinked.
///
/// The bytes may change at any time, so safe access copies in and out
/// ([`write_at`](SharedMemory::write_at), [`read_at`](SharedMemory::read_at)); raw slices are
/// `unsafe`.
///
/// Unlike a [`Segment`](crate::Segment), a named object cannot be sealed: any process allowed
/// to open it may also shrink it (`ftruncate`), after which touching the lost pages raises
/// `SIGBUS` in every process that maps them (as in Python and C). Share names only with
/// processes you trust not to do that; the 0600 mode keeps other users out.
///
/// # Examples
///
/// ```
/// use ipc_shm::SharedMemory;
///
/// let shm = SharedMemory::create(None, 512).unwrap();
/// assert_eq!(shm.size(), 512);
/// shm.write_at(0, b"howdy").unwrap();
///
/// let other = SharedMemory::open(shm.name()).unwrap(); // as another process would
/// let mut buf = [0u8; 5];
/// other.read_at(0, &mut buf).unwrap();
/// assert_eq!(&buf, b"howdy");
///
/// shm.unlink().unwrap();
/// assert!(matches!(shm.unlink(), Err(ipc_shm::Error::NotFound { .. })));
/// assert!(SharedMemory::open(shm.name()).is_err());
/// ```
#[derive(Clone)]
pub struct SharedMemory {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    map: MmapRaw,
    fd: OwnedFd,
    creator: bool,
    /// Registered with this process's tracker (creator, not yet unlinked or kept).
    tracked: AtomicBool,
    /// The object registered with the tracker (creator only).
    id: Option<ObjectId>,
}

/// Prefix of generated names.
const PREFIX: &str = "psm_";

impl SharedMemory {
    /// Creates a new shared memory object of `size` bytes, zero-filled, mode 0600.
    ///
    /// `name` (with or without a leading `/`) must not exist yet; `None` picks an unguessable
    /// random name (`psm_` and 32 hex digits), retrying on the (unlikely) collision. The new
    /// name is tracked: it is unlinked when this process dies without unlinking it, unless
    /// [`keep`](SharedMemory::keep) is called.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroSize`] for `size == 0`; [`Error::NameExists`]; [`Error::NameTooLong`] and
    /// [`Error::InvalidName`] for names the system cannot hold; [`Error::PermissionDenied`];
    /// [`Error::TooManyTracked`] when this process already tracks 65,536 names;
    /// [`Error::Io`] for other system failures (including starting the tracker).
    pub fn create(name: Option<&str>, size: usize) -> Result<SharedMemory, Error> {
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        if size > isize::MAX as usize {
            return Err(Error::TooLarge { size });
        }
        let (name, fd) = match name {
            Some(n) => {
                let n = validate(n)?;
                let fd = sys::shm_create(&format!("/{n}"), size).map_err(|e| map_err(e, n))?;
                (n.to_string(), fd)
            }
            None => loop {
                let mut r = [0u8; 16];
                sys::random_bytes(&mut r).map_err(|e| Error::io("getrandom", e))?;
                let n = format!("{PREFIX}{:032x}", u128::from_le_bytes(r));
                match sys::shm_create(&format!("/{n}"), size) {
                    Ok(fd) => break (n, fd),
                    Err(e) if e.raw_os_error() == Some(Errno::EXIST.raw_os_error()) => continue,
                    Err(e) => return Err(map_err(e, &n)),
                }
            },
        };
        let map = match MmapOptions::new().len(size).map_raw(&fd) {
            Ok(m) => m,
            Err(e) => {
                let _ = sys::shm_unlink(format!("/{name}").as_str());
                return Err(Error::io("mmap", e));
            }
        };
        let registered = ObjectId::of(fd.as_fd())
            .map_err(|e| Error::io("fstat", e))
            .and_then(|id| tracker::register(&name, id).map(|()| id));
        let id = match registered {
            Ok(id) => id,
            Err(e) => {
                let _ = sys::shm_unlink(format!("/{name}").as_str());
                return Err(e);
            }
        };
        Ok(SharedMemory {
            inner: Arc::new(Inner {
                name,
                map,
                fd,
                creator: true,
                tracked: AtomicBool::new(true),
                id: Some(id),
            }),
        })
    }

    /// Attaches to the existing object `name` (with or without a leading `/`). Its size is the
    /// object's real size. An attacher never unlinks the object by itself.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`]; [`Error::PermissionDenied`]; [`Error::NameTooLong`],
    /// [`Error::InvalidName`]; [`Error::ZeroSize`] when the object is empty (nothing to map);
    /// [`Error::Io`] otherwise.
    pub fn open(name: &str) -> Result<SharedMemory, Error> {
        let n = validate(name)?;
        let fd = sys::shm_open(&format!("/{n}")).map_err(|e| map_err(e, n))?;
        SharedMemory::attach(n.to_string(), fd).map_err(|e| match e {
            AttachError::Empty => Error::ZeroSize,
            AttachError::Io(op, e) => Error::io(op, e),
        })
    }

    fn attach(name: String, fd: OwnedFd) -> Result<SharedMemory, AttachError> {
        let size = sys::file_size(fd.as_fd()).map_err(|e| AttachError::Io("fstat", e))?;
        if size == 0 {
            return Err(AttachError::Empty);
        }
        let size = usize::try_from(size)
            .map_err(|_| AttachError::Io("mmap", io::Error::other("too large")))?;
        let map = MmapOptions::new()
            .len(size)
            .map_raw(&fd)
            .map_err(|e| AttachError::Io("mmap", e))?;
        Ok(SharedMemory {
            inner: Arc::new(Inner {
                name,
                map,
                fd,
                creator: false,
                tracked: AtomicBool::new(false),
                id: None,
            }),
        })
    }

    /// The name, without a leading slash.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The size in bytes.
    pub fn size(&self) -> usize {
        self.inner.map.len()
    }

    /// Did this handle (or the handle it was cloned from) create the object?
    pub fn is_creator(&self) -> bool {
        self.inner.creator
    }

    /// Removes the name (Python's `unlink()`). Processes that map the object keep using it;
    /// the memory is freed when the last one unmaps it. Any process may unlink; the creator's
    /// unlink also tells the tracker to forget the name.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when the name is already gone (a second `unlink`, as in Python);
    /// [`Error::PermissionDenied`]; [`Error::Io`] otherwise.
    pub fn unlink(&self) -> Result<(), Error> {
        let name = &self.inner.name;
        let r = sys::shm_unlink(format!("/{name}").as_str()).map_err(|e| map_err(e, name));
        // Once the name is gone (by this call or another process's), there is nothing left
        // to track.
        if matches!(r, Ok(()) | Err(Error::NotFound { .. })) {
            self.untrack();
        }
        r
    }

    fn untrack(&self) {
        if self.inner.tracked.swap(false, Ordering::AcqRel) {
            if let Some(id) = self.inner.id {
                tracker::unregister(&self.inner.name, id);
            }
        }
    }

    /// Keeps the object after this process dies: the tracker forgets the name, so only an
    /// explicit [`unlink`](SharedMemory::unlink) (from any process) removes it (Python 3.13's
    /// `track=False`, chosen after creation). Does nothing on an attached handle, which is
    /// never tracked.
    pub fn keep(&self) {
        self.untrack();
    }

    /// The first byte of the mapping, valid for [`size`](SharedMemory::size) bytes while any
    /// clone of this handle lives. Other processes may write at any time.
    pub fn as_ptr(&self) -> *mut u8 {
        self.inner.map.as_mut_ptr()
    }

    /// The descriptor of the object.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }

    /// Copies `data` into the object at `offset`.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] when `offset + data.len()` exceeds [`size`](SharedMemory::size).
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<(), Error> {
        check_range(offset, data.len(), self.size())?;
        // SAFETY: the range is inside the mapping (checked), which lives while `self` does;
        // `data` is private memory. Writes by other processes are outside this process's
        // memory model; this is a byte copy, as `pwrite` would be.
        unsafe {
            core::ptr::copy_nonoverlapping(data.as_ptr(), self.as_ptr().add(offset), data.len())
        };
        Ok(())
    }

    /// Copies `buf.len()` bytes at `offset` into `buf`.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] when `offset + buf.len()` exceeds [`size`](SharedMemory::size).
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        check_range(offset, buf.len(), self.size())?;
        // SAFETY: as in `write_at`, in the other direction.
        unsafe {
            core::ptr::copy_nonoverlapping(self.as_ptr().add(offset), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    /// The whole object as a byte slice.
    ///
    /// # Safety
    ///
    /// No one (in this or another process) may write the bytes while the slice is in use.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is valid for `size` bytes while `self` lives; the caller promises
        // no concurrent writes.
        unsafe { core::slice::from_raw_parts(self.as_ptr(), self.size()) }
    }

    /// The whole object as a mutable byte slice.
    ///
    /// # Safety
    ///
    /// No one else (no other slice, handle or process) may read or write the bytes while the
    /// slice is in use.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: the mapping is valid for `size` bytes while `self` lives; the caller promises
        // exclusive access.
        unsafe { core::slice::from_raw_parts_mut(self.as_ptr(), self.size()) }
    }
}

enum AttachError {
    Empty,
    Io(&'static str, io::Error),
}

/// Checks a name and returns it without its leading slash.
fn validate(name: &str) -> Result<&str, Error> {
    let n = name.strip_prefix('/').unwrap_or(name);
    if n.is_empty() || n == "." || n == ".." || n.contains('/') || n.contains('\0') {
        return Err(Error::InvalidName {
            name: name.to_string(),
        });
    }
    if n.len() > NAME_MAX {
        return Err(Error::NameTooLong {
            name: name.to_string(),
            max: NAME_MAX,
        });
    }
    Ok(n)
}

fn map_err(e: io::Error, name: &str) -> Error {
    let name = name.to_string();
    match e.raw_os_error() {
        Some(c) if c == Errno::EXIST.raw_os_error() => Error::NameExists { name },
        Some(c) if c == Errno::NOENT.raw_os_error() => Error::NotFound { name },
        Some(c) if c == Errno::ACCESS.raw_os_error() || c == Errno::PERM.raw_os_error() => {
            Error::PermissionDenied { name }
        }
        Some(c) if c == Errno::NAMETOOLONG.raw_os_error() => Error::NameTooLong {
            name,
            max: NAME_MAX,
        },
        Some(c) if c == Errno::INVAL.raw_os_error() => Error::InvalidName { name },
        _ => Error::io("shm_open", e),
    }
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedMemory({:?}, size={})", self.name(), self.size())
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    fd: u32,
    name: String,
    size: u64,
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fd = transfer::push_fd(self.as_fd(), "SharedMemory").map_err(transfer::ser_error)?;
        Wire {
            fd,
            name: self.inner.name.clone(),
            size: self.size() as u64,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        let what = "SharedMemory";
        let fd = transfer::take_fd(w.fd, what).map_err(transfer::de_error)?;
        let wrong = |detail: String| transfer::de_error(TransferError::WrongKind { what, detail });
        if validate(&w.name)
            .map(|n| n.len() != w.name.len())
            .unwrap_or(true)
        {
            return Err(wrong(format!("invalid name {:?}", w.name)));
        }
        sys::check_shm_fd(fd.as_fd(), w.size, false).map_err(wrong)?;
        SharedMemory::attach(w.name, fd).map_err(|e| match e {
            AttachError::Empty => wrong("the object is empty".to_string()),
            AttachError::Io(op, e) => wrong(format!("{op} failed: {e}")),
        })
    }
}

/// The pid of this process's resource tracker, once a tracked [`SharedMemory`] was created
/// (for diagnostics and tests: the tracker exits right after cleaning up for a dead creator).
pub fn tracker_pid() -> Option<u32> {
    tracker::tracker_pid()
}
