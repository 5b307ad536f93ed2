//! A listening socket served by one thread per connection, up to a cap,
//! until dropped. The EdgeX bridge's HTTP server and the agent's p2p
//! endpoint are both this with their own per-connection function.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// What to do with each connection, and with one over the cap.
pub trait Connections: Send + Sync + 'static {
    fn serve(&self, conn: TcpStream);
    /// Answer a connection refused for being one too many, then drop it.
    fn busy(&self, conn: TcpStream, cap: usize);
}

pub struct TcpServer {
    listener: Arc<TcpListener>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl TcpServer {
    pub fn spawn(
        listener: TcpListener,
        cap: usize,
        name: &'static str,
        c: Arc<dyn Connections>,
    ) -> TcpServer {
        let listener = Arc::new(listener);
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (listener, stop) = (listener.clone(), stop.clone());
            std::thread::spawn(move || accept_loop(&listener, &stop, cap, name, c))
        };
        TcpServer {
            listener,
            stop,
            accept: Some(accept),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

fn accept_loop(
    listener: &TcpListener,
    stop: &AtomicBool,
    cap: usize,
    name: &'static str,
    c: Arc<dyn Connections>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else {
            // EMFILE and friends: back off instead of spinning.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if active.fetch_add(1, Ordering::SeqCst) >= cap {
            active.fetch_sub(1, Ordering::SeqCst);
            c.busy(conn, cap);
            continue;
        }
        let (c, active) = (c.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                c.serve(conn);
                active.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            log::warn!("{name}: cannot start a connection thread");
        }
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // SAFETY: shutdown(2) on the listening socket we still own (the Arc
        // keeps it open); it wakes the blocked accept, which then sees stop.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}
