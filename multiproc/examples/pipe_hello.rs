//! Two processes talk through a pipe: a sender sends `"hello"` and closes its end; a receiver
//! prints what arrives, then sees that the other end is closed.
//!
//! Python:
//!
//! ```python
//! from multiprocessing import Process, Pipe
//!
//! def sender(conn):
//!     conn.send("hello")
//!     conn.close()
//!
//! def receiver(conn):
//!     print("received:", conn.recv())
//!     try:
//!         conn.recv()
//!     except EOFError:
//!         print("then: the sender closed its end")
//!
//! if __name__ == "__main__":
//!     a, b = Pipe()
//!     s = Process(target=sender, args=(a,)); r = Process(target=receiver, args=(b,))
//!     s.start(); r.start()
//!     a.close(); b.close()   # the parent keeps no end open
//!     s.join(); r.join()
//!     print("exit codes:", s.exitcode, r.exitcode)
//! ```
//!
//! Passing a connection to `Process::new` moves it into the child; the parent keeps no copy,
//! so once the sender is done, nobody holds the other end and the receiver gets
//! [`ChannelError::Eof`](multiproc::ChannelError::Eof). Mind the order under the `fork` start
//! method: a forked child inherits every descriptor its parent holds at that moment, so the
//! sender is started first — had the receiver been forked while the parent still held the
//! sender's end (in the not yet started `s`), the receiver would hold a copy of that end itself
//! and wait for ever.

use multiproc::prelude::*;
use multiproc::ChannelError;

fn sender(mut conn: Connection) {
    conn.send("hello").unwrap();
    conn.close();
}

fn receiver(conn: Connection) {
    let msg: String = conn.recv().unwrap();
    println!("received: {msg}");
    match conn.recv::<String>() {
        Err(ChannelError::Eof) => println!("then: the sender closed its end"),
        other => println!("then, unexpectedly: {other:?}"),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init();

    let (a, b) = Pipe::new()?;
    let mut s = Process::new(sender, a);
    let mut r = Process::new(receiver, b);
    s.start()?;
    r.start()?;
    s.join()?;
    r.join()?;
    println!("exit codes: {:?} {:?}", s.exitcode(), r.exitcode());
    Ok(())
}
