//! The endpoint's HTTP server: one thread serves every connection, so that no client can take
//! more than its share, whatever it does.
//!
//! - At most [`MAX_CONNECTIONS`] connections are kept. A new one beyond that closes the oldest
//!   that has not sent a whole request yet (then the oldest still being answered), so idle
//!   connections cannot lock a scraper out: the server always accepts.
//! - A request must arrive whole within [`REQUEST_DEADLINE`] of the connection, in at most
//!   [`HEADER_LIMIT`] bytes; an answer must be taken within [`RESPONSE_DEADLINE`]. Past them the
//!   connection is closed (too big: `431`; not HTTP: `400`).
//! - Nothing blocks: reads and writes are non-blocking (mio's event loop), so a client that
//!   never reads its answer holds a buffer, not the thread, and stopping the server is prompt.
//!
//! Every answer closes its connection (`Connection: close`), which Prometheus handles as any
//! HTTP/1.1 server's.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

/// Connections kept at once.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// Bytes a request line and its headers may take.
pub(crate) const HEADER_LIMIT: usize = 8 * 1024;
/// How long a connection has to send its whole request.
pub(crate) const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// How long a client has to take its whole answer.
pub(crate) const RESPONSE_DEADLINE: Duration = Duration::from_secs(5);

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Connection `i` is `Token(FIRST_CONNECTION + i)`.
const FIRST_CONNECTION: usize = 2;

/// What the server answers a request with.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: String,
}

impl Response {
    /// A plain-text answer.
    pub(crate) fn plain(status: u16, body: &str) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.to_owned() }
    }

    fn into_bytes(self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            _ => "Internal Server Error",
        };
        let mut bytes = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        bytes.extend_from_slice(self.body.as_bytes());
        bytes
    }
}

/// A running server; stops (promptly) when dropped.
pub(crate) struct Server {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens on `address` and answers each `GET` with `respond(path)` on a thread of its own
    /// named `thread_name`.
    pub(crate) fn start(
        address: &str,
        thread_name: &str,
        respond: impl FnMut(&str) -> Response + Send + 'static,
    ) -> io::Result<Server> {
        let resolved =
            std::net::ToSocketAddrs::to_socket_addrs(address)?.next().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on")
            })?;
        let std_listener = std::net::TcpListener::bind(resolved)?;
        std_listener.set_nonblocking(true)?;
        let bound = std_listener.local_addr()?;
        let mut listener = TcpListener::from_std(std_listener);
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stop = Arc::new(AtomicBool::new(false));
        let mut event_loop = EventLoop {
            poll,
            listener,
            connections: (0..MAX_CONNECTIONS).map(|_| None).collect(),
            respond: Box::new(respond),
            stop: Arc::clone(&stop),
        };
        let thread = std::thread::Builder::new().name(thread_name.to_owned()).spawn(move || {
            // The endpoint's own allocations are the profiler's, not the program's.
            let _bookkeeping = crate::alloc::bookkeeping();
            event_loop.run();
        })?;
        Ok(Server { address: bound, stop, waker, thread: Some(thread) })
    }

    /// The address it listens on.
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            // Prompt: the thread never blocks but in `poll`, which the waker ends.
            let _ = thread.join();
        }
    }
}

/// Where a connection is.
enum Phase {
    /// Reading its request, which must be whole by the deadline.
    Reading { request: Vec<u8> },
    /// Writing its answer, from `written` on.
    Writing { answer: Vec<u8>, written: usize },
}

struct Connection {
    stream: TcpStream,
    phase: Phase,
    accepted: Instant,
    deadline: Instant,
}

/// What a connection's turn led to.
enum Next {
    KeepGoing,
    Close,
}

struct EventLoop {
    poll: Poll,
    listener: TcpListener,
    connections: Vec<Option<Connection>>,
    respond: Box<dyn FnMut(&str) -> Response + Send>,
    stop: Arc<AtomicBool>,
}

impl EventLoop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(128);
        while !self.stop.load(Ordering::Acquire) {
            let timeout =
                self.next_deadline().map(|at| at.saturating_duration_since(Instant::now()));
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return; // the event loop itself failed: the endpoint stops
            }
            for event in &events {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {}
                    Token(token) => self.turn(token - FIRST_CONNECTION),
                }
            }
            self.close_expired();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.connections.iter().flatten().map(|connection| connection.deadline).min()
    }

    /// Accepts every waiting connection, making room by closing the least useful one when all
    /// slots are taken.
    fn accept_all(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                // Out of file descriptors, a connection reset before it was accepted: try
                // again at the next event rather than spin.
                Err(_) => return,
            };
            let slot = match self.connections.iter().position(Option::is_none) {
                Some(slot) => slot,
                None => {
                    let victim = self.least_useful();
                    self.close(victim);
                    victim
                }
            };
            let mut connection = Connection {
                stream,
                phase: Phase::Reading { request: Vec::new() },
                accepted: Instant::now(),
                deadline: Instant::now() + REQUEST_DEADLINE,
            };
            let token = Token(FIRST_CONNECTION + slot);
            if self
                .poll
                .registry()
                .register(&mut connection.stream, token, Interest::READABLE)
                .is_ok()
            {
                self.connections[slot] = Some(connection);
            }
        }
    }

    /// The connection to close for a new one: the oldest that has not sent a whole request,
    /// else the oldest being answered.
    fn least_useful(&self) -> usize {
        let oldest = |reading: bool| {
            self.connections
                .iter()
                .enumerate()
                .filter_map(|(slot, connection)| Some((slot, connection.as_ref()?)))
                .filter(|(_, connection)| {
                    matches!(connection.phase, Phase::Reading { .. }) == reading
                })
                .min_by_key(|(_, connection)| connection.accepted)
                .map(|(slot, _)| slot)
        };
        oldest(true).or_else(|| oldest(false)).unwrap_or(0)
    }

    fn close(&mut self, slot: usize) {
        if let Some(mut connection) = self.connections[slot].take() {
            let _ = self.poll.registry().deregister(&mut connection.stream);
        }
    }

    fn close_expired(&mut self) {
        let now = Instant::now();
        for slot in 0..self.connections.len() {
            if self.connections[slot].as_ref().is_some_and(|c| c.deadline <= now) {
                self.close(slot);
            }
        }
    }

    /// Moves connection `slot` on as far as it can go without blocking.
    fn turn(&mut self, slot: usize) {
        let Some(connection) = self.connections.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let was_reading = matches!(connection.phase, Phase::Reading { .. });
        let mut next = Next::KeepGoing;
        if was_reading {
            next = read_request(connection, &mut *self.respond);
        }
        if let (Next::KeepGoing, Phase::Writing { .. }) = (&next, &connection.phase) {
            let token = Token(FIRST_CONNECTION + slot);
            let registered = !was_reading
                || self
                    .poll
                    .registry()
                    .reregister(&mut connection.stream, token, Interest::WRITABLE)
                    .is_ok();
            next = if registered { write_answer(connection) } else { Next::Close };
        }
        if let Next::Close = next {
            self.close(slot);
        }
    }
}

/// Reads what the client sent; once the request is whole (or cannot be), prepares the answer.
fn read_request(connection: &mut Connection, respond: &mut dyn FnMut(&str) -> Response) -> Next {
    let Phase::Reading { request } = &mut connection.phase else { return Next::KeepGoing };
    let mut buffer = [0u8; 4096];
    let answer = loop {
        match connection.stream.read(&mut buffer) {
            Ok(0) => return Next::Close, // the client hung up
            Ok(n) => request.extend_from_slice(&buffer[..n]),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Next::KeepGoing,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Next::Close,
        }
        if let Some(answer) = answer_to(request, respond) {
            break answer;
        }
    };
    connection.phase = Phase::Writing { answer: answer.into_bytes(), written: 0 };
    connection.deadline = Instant::now() + RESPONSE_DEADLINE;
    Next::KeepGoing
}

/// The answer to `request` once it is whole, or cannot be; `None` while more is to come.
fn answer_to(request: &[u8], respond: &mut dyn FnMut(&str) -> Response) -> Option<Response> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(request) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) if request.len() > HEADER_LIMIT => {
            return Some(Response::plain(431, "request headers too large\n"));
        }
        Ok(httparse::Status::Partial) => return None,
        Err(httparse::Error::TooManyHeaders) => {
            return Some(Response::plain(431, "too many request headers\n"));
        }
        Err(_) => return Some(Response::plain(400, "not an HTTP request\n")),
    }
    if request.len() > HEADER_LIMIT {
        return Some(Response::plain(431, "request headers too large\n"));
    }
    if parsed.method != Some("GET") {
        return Some(Response::plain(405, "only GET is served\n"));
    }
    let path = parsed.path.unwrap_or("/");
    Some(respond(path.split('?').next().unwrap_or(path)))
}

/// Writes as much of the answer as the client takes now; closes once it is all written.
fn write_answer(connection: &mut Connection) -> Next {
    let Phase::Writing { answer, written } = &mut connection.phase else { return Next::Close };
    while *written < answer.len() {
        match connection.stream.write(&answer[*written..]) {
            Ok(0) => return Next::Close,
            Ok(n) => *written += n,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Next::KeepGoing,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Next::Close,
        }
    }
    let _ = connection.stream.flush();
    let _ = connection.stream.shutdown(std::net::Shutdown::Write);
    Next::Close
}
