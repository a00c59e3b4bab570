//! A TCP proxy on a loopback port that stands between a process and a server (the daemon and
//! PostgreSQL, a remote worker and the tracker) and injects network faults on command: cut every
//! open connection and refuse new ones (a partition, a server restart), or delay every chunk
//! of data in both directions.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// What the proxy's threads share.
#[derive(Debug, Default)]
struct Faults {
    /// Whether the network is partitioned: new connections are closed at once.
    cut: AtomicBool,
    /// Delay added to every chunk forwarded, in milliseconds.
    delay_ms: AtomicU64,
    /// Both ends of every open connection, to cut them.
    open: Mutex<Vec<TcpStream>>,
}

/// A fault-injecting TCP proxy in front of one server. Its threads end with the test process.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    faults: Arc<Faults>,
}

impl FaultProxy {
    /// Starts a proxy to `target` on a free loopback port.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let faults = Arc::new(Faults::default());
        let shared = Arc::clone(&faults);
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if shared.cut.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                forward(&shared, client, server);
            }
        });
        Self { addr, faults }
    }

    /// The proxy's address (give it to the client instead of the server's).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Partitions the network: closes every open connection and refuses new ones until
    /// [`restore`](Self::restore).
    pub fn cut(&self) {
        self.faults.cut.store(true, Ordering::SeqCst);
        let mut open = self.faults.open.lock().unwrap_or_else(PoisonError::into_inner);
        for stream in open.drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Ends a partition: new connections go through again.
    pub fn restore(&self) {
        self.faults.cut.store(false, Ordering::SeqCst);
    }

    /// Delays every chunk forwarded, either way, by `delay` (zero: no delay).
    pub fn delay(&self, delay: Duration) {
        self.faults.delay_ms.store(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }
}

/// Pumps `client` ⇄ `server` on two threads, registering both ends so a cut can close them.
fn forward(faults: &Arc<Faults>, client: TcpStream, server: TcpStream) {
    let (Ok(client_reader), Ok(server_reader)) = (client.try_clone(), server.try_clone()) else { return };
    {
        let mut open = faults.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|stream| stream.peer_addr().is_ok());
        for stream in [&client, &server] {
            if let Ok(clone) = stream.try_clone() {
                open.push(clone);
            }
        }
    }
    let (up, down) = (Arc::clone(faults), Arc::clone(faults));
    std::thread::spawn(move || pump(&up, client_reader, server));
    std::thread::spawn(move || pump(&down, server_reader, client));
}

/// Copies `from` to `to` until either end closes, delaying each chunk as configured.
fn pump(faults: &Faults, mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0_u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let delay = faults.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        if faults.cut.load(Ordering::SeqCst) || to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
