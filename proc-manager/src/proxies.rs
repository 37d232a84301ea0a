//! Proxies to the containers a manager hosts: [`DictProxy`], [`ListProxy`],
//! [`NamespaceProxy`], [`ValueProxy`].
//!
//! # What a proxy returns is a copy
//!
//! The server stores each value as bytes. [`DictProxy::get`] decodes a fresh copy of the value
//! in the caller; changing that copy changes nothing in the server until it is stored back.
//! Python behaves the same way but silently (`d['k'].append(1)` on a managed dict is lost,
//! PP17); here it is plain from the types: `get` returns an owned `V`. To change a value in
//! place, either store it back, or use `update_with`, which is an atomic read-modify-write on
//! the server: it reads the value, runs your closure on a copy, and stores the result only if
//! the value did not change meanwhile (a compare-and-set on the server), retrying otherwise.
//! No update is lost, whatever number of processes do it at once; the closure may run more
//! than once, so it should only compute.
//!
//! To share a mutable structure *inside* a container, store a proxy in it: proxies are serde
//! values, so a `DictProxy<String, ListProxy<u32>>` holds live lists that every process can
//! change (Python's nested proxies), without the leak of gh-103136 (objects live until the
//! manager stops or [`destroy`](DictProxy::destroy) is called: nothing is reference-counted).

use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::client::{dec, enc, unexpected, Handle};
use crate::error::{Error, Result};
use crate::wire::{Op, Reply};

macro_rules! proxy_common {
    ($name:ident) => {
        proxy_common!($name<>);
    };
    ($name:ident < $($p:ident),* >) => {
        impl<$($p),*> Clone for $name<$($p),*> {
            fn clone(&self) -> Self {
                Self::from_handle(self.h.clone())
            }
        }

        impl<$($p),*> fmt::Debug for $name<$($p),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?}, id {})", stringify!($name), self.h.ep, self.h.id)
            }
        }

        impl<$($p),*> PartialEq for $name<$($p),*> {
            fn eq(&self, other: &Self) -> bool {
                self.h == other.h
            }
        }

        impl<$($p),*> $name<$($p),*> {
            pub(crate) fn from_handle(h: Handle) -> Self {
                $name { h, _t: PhantomData }
            }

            /// Removes the object from the server; every proxy to it then gets
            /// [`Error::NoSuchObject`].
            ///
            /// # Errors
            ///
            /// [`Error::NoSuchObject`] when it was already removed.
            pub fn destroy(&self) -> Result<()> {
                self.h.destroy()
            }
        }
    };
}

pub(crate) use proxy_common;

fn swapped(r: Reply) -> Result<(bool, Option<Vec<u8>>)> {
    match r {
        Reply::Swapped(ok, cur) => Ok((ok, cur)),
        r => Err(unexpected(r)),
    }
}

// ---------------------------------------------------------------------------------------------
// dict

/// A dict in a manager (Python's `Manager().dict()`): keys and values are serde values; the
/// server keeps insertion order. Every method is one round trip. Made by
/// [`Manager::dict`](crate::Manager::dict).
///
/// # Examples
///
/// ```
/// use proc_manager::Manager;
///
/// let manager = Manager::start()?;
/// let d = manager.dict::<String, i64>()?;
/// d.insert("a".into(), 1)?;
/// d.update([("b".to_string(), 2), ("c".to_string(), 3)])?;
/// assert_eq!(d.get(&"b".into())?, Some(2));
/// assert_eq!(d.len()?, 3);
/// assert!(matches!(d.get_item(&"zz".into()), Err(proc_manager::Error::KeyNotFound)));
/// assert_eq!(d.update_with(&"a".into(), |v| Some(v.unwrap_or(0) + 10))?, Some(11));
/// assert_eq!(d.keys()?, vec!["a", "b", "c"]);
/// # Ok::<(), proc_manager::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct DictProxy<K, V> {
    h: Handle,
    #[serde(skip)]
    _t: PhantomData<fn() -> (K, V)>,
}

proxy_common!(DictProxy<K, V>);

impl<K, V> DictProxy<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// A copy of the value at `key`, `None` if there is none.
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`] when the server is unreachable (so every method);
    /// [`Error::WrongType`] when the stored value does not decode as `V`.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        self.h.maybe(Op::DictGet(enc(key)?))
    }

    /// The value at `key`, or [`Error::KeyNotFound`] (Python's `d[key]`).
    ///
    /// # Errors
    ///
    /// [`Error::KeyNotFound`], and as [`get`](Self::get).
    pub fn get_item(&self, key: &K) -> Result<V> {
        self.get(key)?.ok_or(Error::KeyNotFound)
    }

    /// Stores `value` at `key`; returns the value it replaced.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        self.h.maybe(Op::DictInsert(enc(&key)?, enc(&value)?))
    }

    /// Removes `key`; returns its value, `None` if there was none.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        self.h.maybe(Op::DictRemove(enc(key)?))
    }

    /// Removes `key` and returns its value, or [`Error::KeyNotFound`] (Python's `d.pop(key)`).
    ///
    /// # Errors
    ///
    /// [`Error::KeyNotFound`], and as [`get`](Self::get).
    pub fn pop(&self, key: &K) -> Result<V> {
        self.remove(key)?.ok_or(Error::KeyNotFound)
    }

    /// Is there a value at `key`?
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        self.h.boolean(Op::DictContains(enc(key)?))
    }

    /// The number of keys.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn len(&self) -> Result<usize> {
        Ok(self.h.count(Op::Len)? as usize)
    }

    /// Is the dict empty?
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The keys, in insertion order.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn keys(&self) -> Result<Vec<K>> {
        self.h.list(Op::DictKeys)
    }

    /// Copies of the values, in insertion order.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn values(&self) -> Result<Vec<V>> {
        self.h.list(Op::DictValues)
    }

    /// Copies of the pairs, in insertion order (one round trip: a consistent snapshot).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        match self.h.call(Op::DictItems)? {
            Reply::Pairs(p) => p.iter().map(|(k, v)| Ok((dec(k)?, dec(v)?))).collect(),
            r => Err(unexpected(r)),
        }
    }

    /// Stores every pair (one round trip, applied atomically).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn update(&self, items: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let items = items
            .into_iter()
            .map(|(k, v)| Ok((enc(&k)?, enc(&v)?)))
            .collect::<Result<Vec<_>>>()?;
        self.h.unit(Op::DictUpdate(items))
    }

    /// Removes every key.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn clear(&self) -> Result<()> {
        self.h.unit(Op::Clear)
    }

    /// Atomic read-modify-write of one key: `f` gets a copy of the current value (`None`: no
    /// key) and returns the new one (`None`: remove the key). The result is stored only if the
    /// key still holds what `f` saw (a compare-and-set on the server), else `f` runs again on
    /// the newer value. Returns what was stored. Two round trips when nobody else writes the
    /// key at the same time.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn update_with(
        &self,
        key: &K,
        mut f: impl FnMut(Option<V>) -> Option<V>,
    ) -> Result<Option<V>> {
        let k = enc(key)?;
        let mut cur: Option<Vec<u8>> = match self.h.call(Op::DictGet(k.clone()))? {
            Reply::MaybeBytes(b) => b,
            r => return Err(unexpected(r)),
        };
        loop {
            let old = cur.as_deref().map(dec::<V>).transpose()?;
            let new = f(old);
            let nb = new.as_ref().map(enc).transpose()?;
            let (ok, now) = swapped(self.h.call(Op::DictCas {
                key: k.clone(),
                expected: cur,
                new: nb,
            })?)?;
            if ok {
                return Ok(new);
            }
            cur = now;
        }
    }

    /// A copy of the whole dict.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn to_vec(&self) -> Result<Vec<(K, V)>> {
        self.items()
    }
}

// ---------------------------------------------------------------------------------------------
// list

/// A list in a manager (Python's `Manager().list()`). Every method is one round trip. Made by
/// [`Manager::list`](crate::Manager::list).
///
/// Reading past the end gives `None` ([`get`](Self::get), [`pop`](Self::pop)); writing past
/// it is [`Error::IndexOutOfRange`] ([`set`](Self::set), [`insert`](Self::insert),
/// [`remove`](Self::remove)).
///
/// # Examples
///
/// ```
/// use proc_manager::{Error, Manager};
///
/// let manager = Manager::start()?;
/// let l = manager.list::<u32>()?;
/// l.push(1)?;
/// l.extend([2, 3, 4])?;
/// assert_eq!(l.pop()?, Some(4));
/// l.insert(0, 0)?;
/// l.set(3, 30)?;
/// assert_eq!(l.to_vec()?, vec![0, 1, 2, 30]);
/// assert!(matches!(l.set(9, 0), Err(Error::IndexOutOfRange { index: 9, len: 4 })));
/// # Ok::<(), Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ListProxy<T> {
    h: Handle,
    #[serde(skip)]
    _t: PhantomData<fn() -> T>,
}

proxy_common!(ListProxy<T>);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// Appends `item` (Python's `append`).
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`] when the server is unreachable (so every method).
    pub fn push(&self, item: T) -> Result<()> {
        self.h.unit(Op::ListPush(enc(&item)?))
    }

    /// Removes and returns the last item, `None` when empty.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push); [`Error::WrongType`] when it does not decode as `T`.
    pub fn pop(&self) -> Result<Option<T>> {
        self.h.maybe(Op::ListPop)
    }

    /// A copy of item `index`, `None` past the end.
    ///
    /// # Errors
    ///
    /// As [`pop`](Self::pop).
    pub fn get(&self, index: usize) -> Result<Option<T>> {
        self.h.maybe(Op::ListGet(index as u64))
    }

    /// Replaces item `index`.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] past the end, and as [`push`](Self::push).
    pub fn set(&self, index: usize, item: T) -> Result<()> {
        self.h.unit(Op::ListSet(index as u64, enc(&item)?))
    }

    /// The number of items.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    pub fn len(&self) -> Result<usize> {
        Ok(self.h.count(Op::Len)? as usize)
    }

    /// Is the list empty?
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Appends every item (one round trip, applied atomically).
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    pub fn extend(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        let items = items
            .into_iter()
            .map(|i| enc(&i))
            .collect::<Result<Vec<_>>>()?;
        self.h.unit(Op::ListExtend(items))
    }

    /// A copy of the whole list (Python's `l[:]`).
    ///
    /// # Errors
    ///
    /// As [`pop`](Self::pop).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.h.list(Op::ListAll)
    }

    /// Inserts `item` before `index` (`index == len` appends).
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] when `index > len`, and as [`push`](Self::push).
    pub fn insert(&self, index: usize, item: T) -> Result<()> {
        self.h.unit(Op::ListInsert(index as u64, enc(&item)?))
    }

    /// Removes and returns item `index`.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] past the end, and as [`pop`](Self::pop).
    pub fn remove(&self, index: usize) -> Result<T> {
        dec(&self.h.bytes(Op::ListRemove(index as u64))?)
    }

    /// Removes every item.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    pub fn clear(&self) -> Result<()> {
        self.h.unit(Op::Clear)
    }

    /// Atomic read-modify-write of item `index` (see [`DictProxy::update_with`]); returns the
    /// stored value.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] past the end, and as [`pop`](Self::pop).
    pub fn update_with(&self, index: usize, mut f: impl FnMut(T) -> T) -> Result<T> {
        let i = index as u64;
        let mut cur = match self.h.call(Op::ListGet(i))? {
            Reply::MaybeBytes(Some(b)) => b,
            Reply::MaybeBytes(None) => {
                return Err(Error::IndexOutOfRange {
                    index: i,
                    len: self.len()? as u64,
                })
            }
            r => return Err(unexpected(r)),
        };
        loop {
            let new = f(dec(&cur)?);
            let (ok, now) = swapped(self.h.call(Op::ListCas {
                index: i,
                expected: cur,
                new: enc(&new)?,
            })?)?;
            if ok {
                return Ok(new);
            }
            cur = now.ok_or_else(|| Error::Protocol("compare-and-set without a value".into()))?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// namespace

/// A namespace in a manager (Python's `Manager().Namespace()`): named fields of any serde
/// type. Each field remembers its type: reading it as another type is [`Error::WrongType`]
/// (checked in the server by type name), a missing field [`Error::KeyNotFound`]. Made by
/// [`Manager::namespace`](crate::Manager::namespace).
///
/// # Examples
///
/// ```
/// use proc_manager::{Error, Manager};
///
/// let manager = Manager::start()?;
/// let ns = manager.namespace()?;
/// ns.set("x", &10i32)?;
/// ns.set("name", &"hello".to_string())?;
/// assert_eq!(ns.get::<i32>("x")?, 10);
/// assert!(matches!(ns.get::<u64>("x"), Err(Error::WrongType { .. })));
/// assert!(matches!(ns.get::<i32>("y"), Err(Error::KeyNotFound)));
/// assert_eq!(ns.update_with("x", |x: Option<i32>| x.unwrap_or(0) + 1)?, 11);
/// assert_eq!(ns.fields()?, vec!["name", "x"]);
/// # Ok::<(), Error>(())
/// ```
#[derive(Serialize, Deserialize)]
pub struct NamespaceProxy {
    h: Handle,
    #[serde(skip)]
    _t: PhantomData<fn()>,
}

proxy_common!(NamespaceProxy);

fn tag<T>() -> String {
    std::any::type_name::<T>().to_string()
}

impl NamespaceProxy {
    /// A copy of field `name` (Python's `ns.name`).
    ///
    /// # Errors
    ///
    /// [`Error::KeyNotFound`] when there is no such field (Python's `AttributeError`),
    /// [`Error::WrongType`] when it holds another type, [`Error::ManagerGone`] when the server
    /// is unreachable.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        dec(&self.h.bytes(Op::NsGet(name.into(), tag::<T>()))?)
    }

    /// Sets field `name` (of any type, replacing whatever it held).
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`] when the server is unreachable.
    pub fn set<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        self.h.unit(Op::NsSet(name.into(), tag::<T>(), enc(value)?))
    }

    /// Removes field `name`; whether it existed.
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`] when the server is unreachable.
    pub fn remove(&self, name: &str) -> Result<bool> {
        self.h.boolean(Op::NsRemove(name.into()))
    }

    /// Does field `name` exist?
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`] when the server is unreachable.
    pub fn contains(&self, name: &str) -> Result<bool> {
        Ok(self.fields()?.iter().any(|f| f == name))
    }

    /// The field names, sorted.
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`] when the server is unreachable.
    pub fn fields(&self) -> Result<Vec<String>> {
        match self.h.call(Op::NsFields)? {
            Reply::Names(n) => Ok(n),
            r => Err(unexpected(r)),
        }
    }

    /// Atomic read-modify-write of field `name` (see [`DictProxy::update_with`]): `f` gets
    /// the current value (`None` when the field does not exist yet) and returns the new one.
    ///
    /// # Errors
    ///
    /// [`Error::WrongType`] when the field holds another type, and as [`get`](Self::get).
    pub fn update_with<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        mut f: impl FnMut(Option<T>) -> T,
    ) -> Result<T> {
        let mut cur = match self.h.call(Op::NsGet(name.into(), tag::<T>())) {
            Ok(Reply::Bytes(b)) => Some(b),
            Ok(r) => return Err(unexpected(r)),
            Err(Error::KeyNotFound) => None,
            Err(e) => return Err(e),
        };
        loop {
            let new = f(cur.as_deref().map(dec::<T>).transpose()?);
            let (ok, now) = swapped(self.h.call(Op::NsCas {
                field: name.into(),
                tag: tag::<T>(),
                expected: cur,
                new: enc(&new)?,
            })?)?;
            if ok {
                return Ok(new);
            }
            cur = now;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// value

/// One value in a manager (Python's `Manager().Value(typecode, v)`, for any serde type). Made
/// by [`Manager::value`](crate::Manager::value).
///
/// # Examples
///
/// ```
/// use proc_manager::Manager;
///
/// let manager = Manager::start()?;
/// let v = manager.value(String::from("a"))?;
/// v.set(String::from("b"))?;
/// assert_eq!(v.update_with(|s| s + "c")?, "bc");
/// assert_eq!(v.get()?, "bc");
/// # Ok::<(), proc_manager::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ValueProxy<T> {
    h: Handle,
    #[serde(skip)]
    _t: PhantomData<fn() -> T>,
}

proxy_common!(ValueProxy<T>);

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// A copy of the value.
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`] when the server is unreachable.
    pub fn get(&self) -> Result<T> {
        dec(&self.h.bytes(Op::ValueGet)?)
    }

    /// Replaces the value.
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`] when the server is unreachable.
    pub fn set(&self, value: T) -> Result<()> {
        self.h.unit(Op::ValueSet(enc(&value)?))
    }

    /// Atomic read-modify-write (see [`DictProxy::update_with`]); returns the stored value.
    ///
    /// # Errors
    ///
    /// [`Error::ManagerGone`] when the server is unreachable.
    pub fn update_with(&self, mut f: impl FnMut(T) -> T) -> Result<T> {
        let mut cur = self.h.bytes(Op::ValueGet)?;
        loop {
            let new = f(dec(&cur)?);
            let (ok, now) = swapped(self.h.call(Op::ValueCas {
                expected: cur,
                new: enc(&new)?,
            })?)?;
            if ok {
                return Ok(new);
            }
            cur = now.ok_or_else(|| Error::Protocol("compare-and-set without a value".into()))?;
        }
    }
}
