//! The facade's promises: the prelude glob leaves std's `Result` alone, the names at the root
//! are the layers' own types, and they work through it (whatever layers the features include).

#[allow(unused_imports)]
use multiproc::prelude::*;

// If the prelude exported a one-parameter `Result<T>` alias, this signature would not compile:
// the glob import would shadow std's two-parameter `Result`.
fn std_result() -> Result<u8, std::io::Error> {
    Ok(1)
}

#[test]
fn prelude_leaves_std_alone() {
    assert_eq!(std_result().unwrap(), 1);
}

// The root names are the layers' types, not copies: each test only compiles if the two
// spellings name the same type.

#[cfg(feature = "shm")]
#[test]
fn shm_through_the_facade() {
    let a: multiproc::shm::RawArray<u8> = multiproc::RawArray::from_slice(&[1u8, 2, 3]).unwrap();
    assert_eq!(a.to_vec(), [1, 2, 3]);
    let v: multiproc::shm::RawValue<u64> = multiproc::RawValue::new(5u64).unwrap();
    assert_eq!(v.fetch_add(2), 5);
    assert_eq!(v.load(), 7);
}

#[cfg(feature = "sync")]
#[test]
fn sync_through_the_facade() {
    let v: multiproc::sync::Value<i32> = Value::new(41i32).unwrap();
    *v.lock() += 1;
    assert_eq!(v.get(), 42);
    let lock: multiproc::sync::Lock = Lock::new().unwrap();
    let guard = lock.acquire();
    assert!(lock.try_acquire().is_none(), "the lock is held");
    drop(guard);
    assert!(lock.try_acquire().is_some());
}

#[cfg(feature = "channel")]
#[test]
fn queues_and_pipes_through_the_facade() {
    let q: multiproc::channel::Queue<u8> = Queue::new().unwrap();
    q.put(7).unwrap();
    assert_eq!(q.get().unwrap(), 7);
    let empty: multiproc::channel::Error = q.try_get().unwrap_err();
    assert!(matches!(empty, multiproc::ChannelError::Empty), "{empty:?}");

    let (x, y) = Pipe::new().unwrap();
    x.send("hello").unwrap();
    assert_eq!(y.recv::<String>().unwrap(), "hello");
    drop(x);
    let eof = y.recv::<String>().unwrap_err();
    assert!(matches!(eof, multiproc::ChannelError::Eof), "{eof:?}");
}

#[cfg(feature = "spawn")]
fn square(x: i64) -> i64 {
    x * x
}

#[cfg(feature = "pool")]
fn refuse(x: i64) -> i64 {
    panic!("refused {x}")
}

#[cfg(feature = "spawn")]
#[test]
fn a_process_through_the_facade() {
    multiproc::init();
    let method: multiproc::spawn::StartMethod = StartMethod::Spawn;
    let ctx: multiproc::spawn::Context = get_context(method);
    assert_eq!(ctx.spawn(square, 12).join().unwrap(), 144);
    let v = Value::new(0i32).unwrap();
    let mut p = ctx.process(add_one, v.clone());
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(v.get(), 1);
}

#[cfg(feature = "spawn")]
fn add_one(v: Value<i32>) {
    *v.lock() += 1;
}

#[cfg(feature = "pool")]
#[test]
fn a_pool_through_the_facade() {
    multiproc::init();
    let pool: multiproc::pool::Pool = Pool::builder()
        .processes(2)
        .context(get_context(StartMethod::Spawn))
        .build()
        .unwrap();
    assert_eq!(pool.map(square, 0..5).unwrap(), [0, 1, 4, 9, 16]);
    let err: multiproc::pool::Error = pool.apply(refuse, 3).unwrap_err();
    match err {
        multiproc::PoolError::Panicked { message, .. } => assert_eq!(message, "refused 3"),
        other => panic!("expected a panic of the task, got {other:?}"),
    }
    assert_eq!(pool.apply(square, 9).unwrap(), 81, "the pool goes on");
}
