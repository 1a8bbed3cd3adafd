//! A minimal D-Bus client: what the systemd backend needs of the protocol and nothing more.
//! SASL `EXTERNAL` over a Unix socket, method calls with the few argument types unit
//! properties take, their replies and errors, and the signals of one member. No threads and no
//! async runtime: a call writes its message and reads until its reply has come.
//!
//! The wire format (D-Bus specification, "Message Protocol"): a 16-byte fixed header (byte
//! order, type, flags, version, body length, serial, length of the header fields), the header
//! fields as an array of `(yv)`, the body from the next multiple of 8; every value aligned to
//! its size from the start of the message. Messages are written little-endian; a message in
//! either byte order is read.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// A D-Bus failure.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("no address: {0}")]
    NoAddress(&'static str),
    #[error("authentication refused: {0:?}")]
    Auth(String),
    #[error("{name}: {message}")]
    Method { name: String, message: String },
    #[error("malformed message: {0}")]
    Protocol(&'static str),
}

/// How long a read waits for the peer, a call's reply or a job's signal. systemd answers in
/// milliseconds; silence this long means it is stuck, and claude-cage says so rather than hang.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The largest message accepted (the specification's limit is 128 MiB; systemd's are small).
const MAX_MESSAGE: usize = 16 << 20;

const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;
const SIGNAL: u8 = 4;

/// Where a bus listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

impl Address {
    /// The first Unix-socket address of a D-Bus address list
    /// (`unix:path=/run/user/1000/bus,guid=…;tcp:…`), its value percent-decoded.
    pub fn parse(list: &str) -> Option<Address> {
        list.split(';').find_map(|a| {
            let params = a.strip_prefix("unix:")?;
            params.split(',').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                let v = unescape(v)?;
                match k {
                    "path" => Some(Address::Path(PathBuf::from(
                        <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(v),
                    ))),
                    "abstract" => Some(Address::Abstract(v)),
                    _ => None,
                }
            })
        })
    }
}

/// Percent-decodes an address value.
fn unescape(v: &str) -> Option<Vec<u8>> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// A value in a property list: the types systemd's unit properties need here.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Bool(bool),
    U64(u64),
    U32Array(Vec<u32>),
}

impl Value {
    fn signature(&self) -> &'static str {
        match self {
            Value::Str(_) => "s",
            Value::Bool(_) => "b",
            Value::U64(_) => "t",
            Value::U32Array(_) => "au",
        }
    }
}

/// A message body being written, and its signature.
#[derive(Debug, Default)]
pub struct Body {
    buf: Vec<u8>,
    sig: String,
}

impl Body {
    pub fn new() -> Body {
        Body::default()
    }

    /// A string argument (`s`).
    pub fn string(mut self, s: &str) -> Body {
        self.sig.push('s');
        self.put_str(s);
        self
    }

    /// A boolean argument (`b`).
    pub fn boolean(mut self, b: bool) -> Body {
        self.sig.push('b');
        self.put_u32(u32::from(b));
        self
    }

    /// A property list (`a(sv)`).
    pub fn properties(mut self, props: &[(&str, Value)]) -> Body {
        self.sig.push_str("a(sv)");
        let at = self.begin_array(8);
        for (name, v) in props {
            self.pad(8);
            self.put_str(name);
            self.put_sig(v.signature());
            self.put_value(v);
        }
        self.end_array(at);
        self
    }

    /// An empty list of auxiliary units (`a(sa(sv))`), `StartTransientUnit`'s last argument.
    pub fn no_aux_units(mut self) -> Body {
        self.sig.push_str("a(sa(sv))");
        let at = self.begin_array(8);
        self.end_array(at);
        self
    }

    fn pad(&mut self, align: usize) {
        while self.buf.len() % align != 0 {
            self.buf.push(0);
        }
    }

    fn put_u32(&mut self, v: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn put_str(&mut self, s: &str) {
        self.put_u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    fn put_sig(&mut self, s: &str) {
        self.buf.push(s.len() as u8);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    fn put_value(&mut self, v: &Value) {
        match v {
            Value::Str(s) => self.put_str(s),
            Value::Bool(b) => self.put_u32(u32::from(*b)),
            Value::U64(n) => {
                self.pad(8);
                self.buf.extend_from_slice(&n.to_le_bytes());
            }
            Value::U32Array(a) => {
                let at = self.begin_array(4);
                for n in a {
                    self.put_u32(*n);
                }
                self.end_array(at);
            }
        }
    }

    /// Writes an array's length as a placeholder and the padding to its first element (there
    /// even when the array is empty); returns where the length and the elements begin.
    fn begin_array(&mut self, align: usize) -> (usize, usize) {
        self.put_u32(0);
        let len_at = self.buf.len() - 4;
        self.pad(align);
        (len_at, self.buf.len())
    }

    fn end_array(&mut self, (len_at, start): (usize, usize)) {
        let len = (self.buf.len() - start) as u32;
        self.buf[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    }
}

/// Where a method call goes.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub destination: &'a str,
    pub path: &'a str,
    pub interface: &'a str,
}

/// A method call message, ready to send.
fn encode(serial: u32, to: &Target<'_>, member: &str, body: &Body) -> Vec<u8> {
    let fields = [
        (1, Field::Str("o", to.path)),
        (2, Field::Str("s", to.interface)),
        (3, Field::Str("s", member)),
        (6, Field::Str("s", to.destination)),
    ];
    encode_message(METHOD_CALL, serial, &fields, body)
}

/// A header field's value: a string, object path or signature (its type), or a number.
#[derive(Clone, Copy)]
enum Field<'a> {
    Str(&'a str, &'a str),
    /// (Only a peer's reply serial: claude-cage sends calls, the tests' peer replies.)
    #[cfg_attr(not(test), allow(dead_code))]
    U32(u32),
}

/// A message of any kind: the fixed header, the header fields (code and value; the body's
/// signature is added), the padding, the body.
fn encode_message(kind: u8, serial: u32, fields: &[(u8, Field<'_>)], body: &Body) -> Vec<u8> {
    let mut h = Body::new();
    h.buf.extend_from_slice(&[b'l', kind, 0, 1]);
    h.buf
        .extend_from_slice(&(body.buf.len() as u32).to_le_bytes());
    h.buf.extend_from_slice(&serial.to_le_bytes());
    let at = h.begin_array(8);
    let sig = (!body.sig.is_empty()).then_some((8, Field::Str("g", body.sig.as_str())));
    for &(code, v) in fields.iter().chain(sig.as_ref()) {
        h.pad(8);
        h.buf.push(code);
        match v {
            Field::Str(t, v) => {
                h.put_sig(t);
                if t == "g" {
                    h.put_sig(v);
                } else {
                    h.put_str(v);
                }
            }
            Field::U32(n) => {
                h.put_sig("u");
                h.put_u32(n);
            }
        }
    }
    h.end_array(at);
    h.pad(8);
    h.buf.extend_from_slice(&body.buf);
    h.buf
}

/// A message read from the bus: the header fields claude-cage looks at, and the body.
#[derive(Debug)]
pub struct Message {
    pub kind: u8,
    pub reply_serial: Option<u32>,
    pub interface: Option<String>,
    pub member: Option<String>,
    pub error_name: Option<String>,
    pub signature: String,
    body: Vec<u8>,
    big_endian: bool,
}

impl Message {
    /// The body, to read its arguments after checking the signature.
    pub fn body(&self, signature: &str) -> Result<Reader<'_>, BusError> {
        if self.signature != signature {
            return Err(BusError::Protocol("unexpected signature"));
        }
        Ok(Reader {
            buf: &self.body,
            pos: 0,
            big_endian: self.big_endian,
        })
    }

    /// An error reply as an error: its name, and its message (the first argument, a string).
    fn into_error(self) -> BusError {
        let mut r = Reader {
            buf: &self.body,
            pos: 0,
            big_endian: self.big_endian,
        };
        let message = if self.signature.starts_with('s') {
            r.string().unwrap_or_default()
        } else {
            String::new()
        };
        BusError::Method {
            name: self.error_name.unwrap_or_default(),
            message,
        }
    }
}

/// Reads values out of a message, each at its alignment.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    big_endian: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BusError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(BusError::Protocol("truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn align(&mut self, n: usize) -> Result<(), BusError> {
        let pad = (n - self.pos % n) % n;
        self.take(pad).map(drop)
    }

    fn byte(&mut self) -> Result<u8, BusError> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, BusError> {
        self.align(4)?;
        let b: [u8; 4] = self.take(4)?.try_into().expect("4 bytes");
        Ok(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    /// A string or an object path.
    pub fn string(&mut self) -> Result<String, BusError> {
        let len = self.u32()? as usize;
        self.text(len)
    }

    pub fn signature(&mut self) -> Result<String, BusError> {
        let len = self.byte()? as usize;
        self.text(len)
    }

    fn text(&mut self, len: usize) -> Result<String, BusError> {
        let s = self.take(len)?;
        if self.byte()? != 0 {
            return Err(BusError::Protocol("string without its terminating nul"));
        }
        String::from_utf8(s.to_vec()).map_err(|_| BusError::Protocol("string not UTF-8"))
    }
}

/// Reads one whole message.
fn read_message(r: &mut impl Read) -> Result<Message, BusError> {
    let mut fixed = [0u8; 16];
    r.read_exact(&mut fixed)?;
    let big_endian = match fixed[0] {
        b'l' => false,
        b'B' => true,
        _ => return Err(BusError::Protocol("unknown byte order")),
    };
    let number = |i: usize| {
        let b: [u8; 4] = fixed[i..i + 4].try_into().expect("4 bytes");
        if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let (body_len, fields_len) = (number(4) as usize, number(12) as usize);
    if body_len > MAX_MESSAGE || fields_len > MAX_MESSAGE {
        return Err(BusError::Protocol("message too large"));
    }
    let fields_end = 16 + fields_len;
    let body_start = fields_end.next_multiple_of(8);
    let mut all = vec![0u8; body_start + body_len];
    all[..16].copy_from_slice(&fixed);
    r.read_exact(&mut all[16..])?;
    let mut m = Message {
        kind: fixed[1],
        reply_serial: None,
        interface: None,
        member: None,
        error_name: None,
        signature: String::new(),
        body: all.split_off(body_start),
        big_endian,
    };
    let mut f = Reader {
        buf: &all[..fields_end],
        pos: 16,
        big_endian,
    };
    while f.pos < fields_end {
        f.align(8)?;
        let code = f.byte()?;
        match (code, f.signature()?.as_str()) {
            (2, "s") => m.interface = Some(f.string()?),
            (3, "s") => m.member = Some(f.string()?),
            (4, "s") => m.error_name = Some(f.string()?),
            (5, "u") => m.reply_serial = Some(f.u32()?),
            (8, "g") => m.signature = f.signature()?,
            (_, "s" | "o") => drop(f.string()?),
            (_, "g") => drop(f.signature()?),
            (_, "u") => drop(f.u32()?),
            _ => return Err(BusError::Protocol("header field of an unknown type")),
        }
    }
    Ok(m)
}

/// A connection, authenticated.
pub struct Bus {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    serial: u32,
    /// The signal kept for [`Bus::next_signal`] (interface, member); others are dropped.
    watched: Option<(&'static str, &'static str)>,
    signals: VecDeque<Message>,
}

impl Bus {
    /// Connects and authenticates as this process's user (`EXTERNAL`: the server checks it
    /// against the socket's peer credentials).
    pub fn connect(addr: &Address) -> Result<Bus, BusError> {
        let stream = match addr {
            Address::Path(p) => UnixStream::connect(p)?,
            Address::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let a = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                UnixStream::connect_addr(&a)?
            }
        };
        Bus::over(stream)
    }

    /// Authenticates on a connected stream.
    fn over(stream: UnixStream) -> Result<Bus, BusError> {
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        let mut bus = Bus {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            serial: 0,
            watched: None,
            signals: VecDeque::new(),
        };
        bus.authenticate()?;
        Ok(bus)
    }

    /// `AUTH EXTERNAL` and `BEGIN` in one write, then the server's `OK`, as sd-bus's own
    /// clients (systemctl) do it. Waiting for `OK` before `BEGIN` put `BEGIN` and the first
    /// call in one read of the server's, and systemd's private socket then left that call
    /// unanswered now and then (2 runs in 40 in the systemd test VM).
    fn authenticate(&mut self) -> Result<(), BusError> {
        let uid = nix::unistd::Uid::effective().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        self.writer
            .write_all(format!("\0AUTH EXTERNAL {hex}\r\nBEGIN\r\n").as_bytes())?;
        let mut line = Vec::new();
        (&mut self.reader).take(512).read_until(b'\n', &mut line)?;
        let line = String::from_utf8_lossy(&line);
        if !line.starts_with("OK ") {
            return Err(BusError::Auth(line.trim_end().to_owned()));
        }
        Ok(())
    }

    /// Keeps the signals `interface.member` for [`Bus::next_signal`], also those that arrive
    /// while a call waits for its reply. (A match rule on a message bus is the caller's.)
    pub fn watch(&mut self, interface: &'static str, member: &'static str) {
        self.watched = Some((interface, member));
    }

    fn is_watched(&self, m: &Message) -> bool {
        m.kind == SIGNAL
            && self.watched.is_some_and(|(i, n)| {
                m.interface.as_deref() == Some(i) && m.member.as_deref() == Some(n)
            })
    }

    /// Calls a method and waits for its reply; an error reply is [`BusError::Method`].
    pub fn call(&mut self, to: &Target<'_>, member: &str, body: Body) -> Result<Message, BusError> {
        self.serial = self.serial.wrapping_add(1).max(1);
        let serial = self.serial;
        self.writer.write_all(&encode(serial, to, member, &body))?;
        loop {
            let m = read_message(&mut self.reader)?;
            match m.kind {
                METHOD_RETURN if m.reply_serial == Some(serial) => return Ok(m),
                ERROR if m.reply_serial == Some(serial) => return Err(m.into_error()),
                _ if self.is_watched(&m) => self.signals.push_back(m),
                // Other signals, and calls to claude-cage (it serves nothing).
                _ => {}
            }
        }
    }

    /// The next watched signal, the oldest first.
    pub fn next_signal(&mut self) -> Result<Message, BusError> {
        if let Some(m) = self.signals.pop_front() {
            return Ok(m);
        }
        loop {
            let m = read_message(&mut self.reader)?;
            if self.is_watched(&m) {
                return Ok(m);
            }
        }
    }

    /// Joins a message bus: `Hello`, which it requires first.
    pub fn hello(&mut self) -> Result<(), BusError> {
        self.call(&MESSAGE_BUS, "Hello", Body::new()).map(drop)
    }

    /// Asks a message bus to route the signals of a match rule here.
    pub fn add_match(&mut self, rule: &str) -> Result<(), BusError> {
        self.call(&MESSAGE_BUS, "AddMatch", Body::new().string(rule))
            .map(drop)
    }
}

/// The message bus itself (dbus-daemon).
const MESSAGE_BUS: Target<'static> = Target {
    destination: "org.freedesktop.DBus",
    path: "/org/freedesktop/DBus",
    interface: "org.freedesktop.DBus",
};

#[cfg(test)]
mod tests;
