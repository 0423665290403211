//! The bot endpoints: a bot opens its session with the token from its Secret.

use conclave_protocol::auth::TokenPair;
use conclave_protocol::bots::BotSessionRequest;

use super::{Call, Client, Result, Tokens, decode};

impl Client {
    /// `POST /v1/bot/sessions`: opens a session for the bot whose token this is, on the device
    /// `request` names or registers. The client uses the new tokens from then on.
    pub async fn open_bot_session(&self, bot_token: &str, request: &BotSessionRequest) -> Result<TokenPair> {
        let call = Call::post("/v1/bot/sessions", request, false)?;
        let pair: TokenPair = decode(&self.send(&call, Some(bot_token)).await?)?;
        self.set_tokens(Some(Tokens {
            access_token: pair.access_token.clone(),
            refresh_token: pair.refresh_token.clone(),
        }))
        .await;
        Ok(pair)
    }
}
