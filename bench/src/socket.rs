//! WebSocket clients from many loopback source addresses: one address has about 28,000
//! ephemeral ports, so sockets are spread over 127.0.0.1, 127.0.0.2, ... (all of 127.0.0.0/8 is
//! loopback on Linux) by binding before connecting.

use anyhow::{Context, Result, bail};
use conclave_protocol::events::ServerFrame;
use futures::StreamExt as _;
use std::net::{Ipv4Addr, SocketAddr};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

pub type Socket = WebSocketStream<TcpStream>;

/// The `index`-th source address of `count`: 127.0.0.1, 127.0.0.2, ...
pub fn source_address(index: usize, count: usize) -> Ipv4Addr {
    let n = (index % count.max(1)) as u32 + 1;
    Ipv4Addr::from(0x7f00_0000 | n)
}

/// Opens `/v1/ws` on `port` from `source`, authenticated with `token`, and waits for `ready`.
pub async fn connect(source: Ipv4Addr, port: u16, token: &str) -> Result<Socket> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0))).with_context(|| format!("binding {source}"))?;
    let stream = socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await.context("connecting")?;
    stream.set_nodelay(true)?;
    let mut request = format!("ws://127.0.0.1:{port}/v1/ws").into_client_request()?;
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse()?);
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream).await.context("WebSocket handshake")?;
    match ws.next().await {
        Some(Ok(WsMessage::Text(text))) => match serde_json::from_str::<ServerFrame>(&text) {
            Ok(ServerFrame::Ready { .. }) => Ok(ws),
            _ => bail!("the first frame was not `ready`: {text}"),
        },
        other => bail!("no `ready` frame: {other:?}"),
    }
}

/// The `client_message_id` of a `message_created` frame, found without decoding the whole frame
/// (the receive loop sees tens of thousands per second on a machine it shares with the server).
pub fn client_message_id(frame: &str) -> Option<uuid::Uuid> {
    if !frame.contains("\"message_created\"") {
        return None;
    }
    let key = "\"client_message_id\":\"";
    let start = frame.find(key)? + key.len();
    frame.get(start..start + 36)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_cycle_over_loopback() {
        assert_eq!(source_address(0, 4), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_address(3, 4), Ipv4Addr::new(127, 0, 0, 4));
        assert_eq!(source_address(4, 4), Ipv4Addr::new(127, 0, 0, 1));
    }

    #[test]
    fn the_client_message_id_is_found_in_a_real_frame() {
        let id = uuid::Uuid::new_v4();
        // Built from JSON, so fields added to `Message` later (with defaults) do not break it.
        let message: conclave_protocol::api::Message = serde_json::from_value(serde_json::json!({
            "id": uuid::Uuid::now_v7(),
            "conversation_id": uuid::Uuid::now_v7(),
            "seq": 1,
            "sender_user_id": null,
            "sender_device_id": null,
            "client_message_id": id,
            "key_generation": 1,
            "ciphertext": conclave_protocol::b64::encode([1u8; 20]),
            "reply_to_id": null,
            "created_at": "2026-01-01T00:00:00Z",
            "edited_at": null,
            "deleted_at": null,
        }))
        .expect("a message");
        let frame = serde_json::to_string(&ServerFrame::MessageCreated { message }).expect("encode");
        assert_eq!(client_message_id(&frame), Some(id));
        assert_eq!(client_message_id("{\"type\":\"pong\"}"), None);
    }
}
