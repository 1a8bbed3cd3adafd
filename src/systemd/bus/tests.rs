use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;

use super::*;

/// A message of any kind, as a peer would send it (the client itself only sends calls).
fn message(
    kind: u8,
    serial: u32,
    reply_to: Option<u32>,
    fields: &[(u8, &str, &str)],
    body: &Body,
) -> Vec<u8> {
    let mut all: Vec<(u8, Field<'_>)> = fields
        .iter()
        .map(|&(c, t, v)| (c, Field::Str(t, v)))
        .collect();
    all.extend(reply_to.map(|r| (5, Field::U32(r))));
    encode_message(kind, serial, &all, body)
}

fn job_removed(serial: u32, job: &str, result: &str) -> Vec<u8> {
    let mut b = Body::new();
    b.sig.push('u');
    b.put_u32(7);
    b.sig.push('o');
    b.put_str(job);
    let b = b.string("x.scope").string(result);
    message(
        SIGNAL,
        serial,
        None,
        &[
            (1, "o", "/org/freedesktop/systemd1"),
            (2, "s", "org.freedesktop.systemd1.Manager"),
            (3, "s", "JobRemoved"),
            (7, "s", "org.freedesktop.systemd1"),
        ],
        &b,
    )
}

#[test]
fn property_list_layout() {
    // a(sv) with one (s "A", v t 1): the length, padding to the struct's 8, "A", the variant's
    // signature "t", padding to 8, the number.
    let b = Body::new().properties(&[("A", Value::U64(1))]);
    assert_eq!(b.sig, "a(sv)");
    #[rustfmt::skip]
    let want: Vec<u8> = vec![
        24, 0, 0, 0, 0, 0, 0, 0,
        1, 0, 0, 0, b'A', 0, 1, b't', 0, 0, 0, 0, 0, 0, 0, 0,
        1, 0, 0, 0, 0, 0, 0, 0,
    ];
    assert_eq!(b.buf, want);
    // An empty array still has its padding to the first element.
    let e = Body::new().string("ab").no_aux_units();
    assert_eq!(e.sig, "sa(sa(sv))");
    assert_eq!(
        e.buf,
        vec![2, 0, 0, 0, b'a', b'b', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    // au inside a variant, after a string
    let a = Body::new().properties(&[
        ("PIDs", Value::U32Array(vec![5, 6])),
        ("D", Value::Bool(true)),
    ]);
    #[rustfmt::skip]
    let want: Vec<u8> = vec![
        48, 0, 0, 0, 0, 0, 0, 0,
        4, 0, 0, 0, b'P', b'I', b'D', b's', 0, 2, b'a', b'u', 0, 0, 0, 0,
        8, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0,
        1, 0, 0, 0, b'D', 0, 1, b'b', 0, 0, 0, 0, 1, 0, 0, 0,
    ];
    assert_eq!(a.buf, want);
}

#[test]
fn a_call_reads_back_as_written() {
    let to = Target {
        destination: "org.freedesktop.systemd1",
        path: "/org/freedesktop/systemd1",
        interface: "org.freedesktop.systemd1.Manager",
    };
    let body = Body::new().string("u.scope").string("fail");
    let bytes = encode(9, &to, "StopUnit", &body);
    assert_eq!(
        bytes.len() % 8,
        (body.buf.len()) % 8,
        "the body starts at a multiple of 8"
    );
    let m = read_message(&mut &bytes[..]).unwrap();
    assert_eq!(m.kind, METHOD_CALL);
    assert_eq!(m.member.as_deref(), Some("StopUnit"));
    assert_eq!(
        m.interface.as_deref(),
        Some("org.freedesktop.systemd1.Manager")
    );
    let mut r = m.body("ss").unwrap();
    assert_eq!(r.string().unwrap(), "u.scope");
    assert_eq!(r.string().unwrap(), "fail");
    assert!(matches!(m.body("s"), Err(BusError::Protocol(_))));
}

#[test]
fn malformed_messages_are_errors() {
    let body = Body::new().string("abc");
    let good = message(METHOD_RETURN, 1, Some(1), &[], &body);
    assert!(read_message(&mut &good[..]).is_ok());
    // truncated
    assert!(read_message(&mut &good[..good.len() - 1]).is_err());
    // unknown byte order
    let mut bad = good.clone();
    bad[0] = b'x';
    assert!(matches!(
        read_message(&mut &bad[..]),
        Err(BusError::Protocol(_))
    ));
    // a body length past the limit is refused before anything is allocated
    let mut huge = good.clone();
    huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        read_message(&mut &huge[..]),
        Err(BusError::Protocol(_))
    ));
    // a string without its nul
    let mut nonul = good;
    let n = nonul.len();
    nonul[n - 1] = b'x';
    let m = read_message(&mut &nonul[..]).unwrap();
    assert!(m.body("s").unwrap().string().is_err());
}

#[test]
fn addresses() {
    assert_eq!(
        Address::parse("unix:path=/run/user/1000/bus"),
        Some(Address::Path("/run/user/1000/bus".into()))
    );
    assert_eq!(
        Address::parse("tcp:host=x,port=1;unix:abstract=/tmp/dbus-a%2cb,guid=00"),
        Some(Address::Abstract(b"/tmp/dbus-a,b".to_vec()))
    );
    assert_eq!(
        Address::parse("unix:guid=1,path=/p%20q"),
        Some(Address::Path("/p q".into()))
    );
    assert_eq!(Address::parse("tcp:host=localhost"), None);
    assert_eq!(Address::parse("unix:path=/x%2"), None);
}

/// A peer on the other end of a socket pair: authenticates the client, reads its calls, and
/// answers with `script`'s messages for each.
fn peer(script: Vec<Vec<Vec<u8>>>) -> (Bus, std::thread::JoinHandle<Vec<Message>>) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let server = std::thread::spawn(move || {
        let mut r = BufReader::new(theirs.try_clone().unwrap());
        let mut w = theirs;
        let mut nul = [0u8];
        r.read_exact(&mut nul).unwrap();
        assert_eq!(nul, [0]);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let uid = nix::unistd::Uid::effective().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        assert_eq!(line, format!("AUTH EXTERNAL {hex}\r\n"));
        line.clear();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "BEGIN\r\n");
        w.write_all(b"OK 0123456789abcdef\r\n").unwrap();
        let mut calls = Vec::new();
        for answers in script {
            calls.push(read_message(&mut r).unwrap());
            for a in answers {
                w.write_all(&a).unwrap();
            }
        }
        calls
    });
    (Bus::over(ours).unwrap(), server)
}

const SD: Target<'static> = Target {
    destination: "org.freedesktop.systemd1",
    path: "/org/freedesktop/systemd1",
    interface: "org.freedesktop.systemd1.Manager",
};

#[test]
fn a_job_signal_that_comes_before_the_reply_is_kept() {
    let reply = message(METHOD_RETURN, 100, Some(1), &[], &{
        let mut b = Body::new();
        b.sig.push('o');
        b.put_str("/org/freedesktop/systemd1/job/42");
        b
    });
    let (mut bus, server) = peer(vec![vec![
        // an unwatched signal, then another job's end, then ours, then the reply
        message(
            SIGNAL,
            99,
            None,
            &[
                (2, "s", "org.freedesktop.systemd1.Manager"),
                (3, "s", "UnitNew"),
            ],
            &Body::new().string("x").string("/o"),
        ),
        job_removed(101, "/org/freedesktop/systemd1/job/41", "done"),
        job_removed(102, "/org/freedesktop/systemd1/job/42", "failed"),
        reply,
    ]]);
    bus.watch("org.freedesktop.systemd1.Manager", "JobRemoved");
    let m = bus
        .call(&SD, "StartTransientUnit", Body::new().string("x.scope"))
        .unwrap();
    assert_eq!(
        m.body("o").unwrap().string().unwrap(),
        "/org/freedesktop/systemd1/job/42"
    );
    let jobs: Vec<(String, String)> = (0..2)
        .map(|_| {
            let s = bus.next_signal().unwrap();
            let mut r = s.body("uoss").unwrap();
            r.u32().unwrap();
            let job = r.string().unwrap();
            r.string().unwrap();
            (job, r.string().unwrap())
        })
        .collect();
    assert_eq!(
        jobs,
        [
            (
                "/org/freedesktop/systemd1/job/41".to_owned(),
                "done".to_owned()
            ),
            (
                "/org/freedesktop/systemd1/job/42".to_owned(),
                "failed".to_owned()
            )
        ]
    );
    let calls = server.join().unwrap();
    assert_eq!(calls[0].member.as_deref(), Some("StartTransientUnit"));
    assert_eq!(calls[0].body("s").unwrap().string().unwrap(), "x.scope");
}

#[test]
fn an_error_reply_is_the_callers_error_and_a_closed_peer_ends_the_wait() {
    let err = message(
        ERROR,
        5,
        Some(1),
        &[(4, "s", "org.freedesktop.systemd1.NoSuchUnit")],
        &Body::new().string("Unit u.scope not loaded."),
    );
    // The reply to another serial is not ours.
    let other = message(METHOD_RETURN, 4, Some(77), &[], &Body::new());
    let (mut bus, server) = peer(vec![vec![other, err]]);
    match bus.call(
        &SD,
        "StopUnit",
        Body::new().string("u.scope").string("fail"),
    ) {
        Err(BusError::Method { name, message }) => {
            assert_eq!(name, "org.freedesktop.systemd1.NoSuchUnit");
            assert_eq!(message, "Unit u.scope not loaded.");
        }
        other => panic!("not the error reply: {other:?}"),
    }
    server.join().unwrap();
    bus.watch("org.freedesktop.systemd1.Manager", "JobRemoved");
    assert!(matches!(bus.next_signal(), Err(BusError::Io(_))));
}

#[test]
fn a_refused_authentication_is_an_error() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let server = std::thread::spawn(move || {
        let mut r = BufReader::new(theirs.try_clone().unwrap());
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line).unwrap();
        (&theirs).write_all(b"REJECTED EXTERNAL\r\n").unwrap();
    });
    match Bus::over(ours) {
        Err(BusError::Auth(l)) => assert_eq!(l, "REJECTED EXTERNAL"),
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("authenticated"),
    }
    server.join().unwrap();
}
