//! One netlink request and every message of its answer: what the
//! ruleset, link and address readers share.

use std::{fmt::Debug, io};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NetlinkSerializable,
};
use netlink_sys::{Socket, SocketAddr};

/// A socket of `protocol` in the calling thread's network namespace,
/// connected to the kernel.
pub(crate) fn socket(protocol: isize) -> io::Result<Socket> {
    let mut socket = Socket::new(protocol)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// Sends `request` as a dump and collects the messages of the answer: at
/// most `max` (what a namespace holds is up to whoever owns it), else an
/// error saying so.
pub(crate) fn dump<M>(socket: &Socket, request: M, max: usize) -> io::Result<Vec<M>>
where
    M: NetlinkSerializable + NetlinkDeserializable + Debug,
{
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request));
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let mut out = Vec::new();
    let mut rx: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        rx.clear();
        let n = socket.recv(&mut rx, 0)?;
        let mut at = 0;
        while at < n {
            let msg = NetlinkMessage::<M>::deserialize(&rx[at..n])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::InnerMessage(m) => {
                    if out.len() == max {
                        return Err(io::Error::other(format!(
                            "it holds more than {max} of them, which portwatch does not read"
                        )));
                    }
                    out.push(m);
                }
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => {
                    return Err(e.code.map_or_else(
                        || io::Error::other("netlink error"),
                        |c| io::Error::from_raw_os_error(-c.get()),
                    ));
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            at += len;
        }
    }
}
