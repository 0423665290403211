//! A reminder bot: a member of its conversations like anyone, end to end encrypted.
//!
//! - `/remind 10m stand up` answers "⏰ stand up" in the conversation ten minutes later
//!   (`s`, `m`, `h`, `d`; at most a week);
//! - `/reminders` lists the pending ones of the conversation;
//! - `/help` says so; any other command gets a 🤔.
//!
//! Run it anywhere with the BotAgent's token (`examples/reminder-bot.yaml` declares one; the
//! operator writes its token into the Secret `reminder-bot-token`):
//!
//! ```text
//! CONCLAVE_SERVER=http://127.0.0.1:8080 CONCLAVE_BOT_TOKEN_FILE=/path/to/token \
//! CONCLAVE_BOT_STATE=/var/lib/reminder-bot cargo run -p conclave-client --example reminder_bot
//! ```
//!
//! then add it to a conversation (`conclave invite --member <the bot's user id>`). It prints its
//! user id when it starts. Ctrl-C or SIGTERM stops it gracefully. Reminders live in memory: a
//! restart forgets them (a real bot would keep them in its state directory).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conclave_client::bot::{Bot, BotToken, Context};
use uuid::Uuid;

/// The most reminders pending at once, in all conversations: each is a sleeping task.
const MAX_PENDING: usize = 1_000;

/// The longest delay accepted.
const MAX_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = std::env::var("CONCLAVE_SERVER").unwrap_or_else(|_| "http://127.0.0.1:8080".to_owned());
    let token = match (std::env::var("CONCLAVE_BOT_TOKEN_FILE"), std::env::var("CONCLAVE_BOT_TOKEN")) {
        (Ok(path), _) => BotToken::File(path.into()),
        (Err(_), Ok(token)) => BotToken::Value(token),
        _ => anyhow::bail!("set CONCLAVE_BOT_TOKEN_FILE (the mounted Secret's `token`) or CONCLAVE_BOT_TOKEN"),
    };
    let state = std::env::var("CONCLAVE_BOT_STATE").unwrap_or_else(|_| "reminder-bot".to_owned());
    let bot = Bot::builder(server, token).state_dir(state).device_name("reminder-bot").connect().await?;
    println!("reminder bot: user {} device {}", bot.user_id(), bot.device_id());
    let pending: Pending = Arc::default();
    bot.run(shutdown(), move |ctx| handle(ctx, pending.clone())).await?;
    println!("reminder bot: stopped");
    Ok(())
}

/// The reminders waiting, per conversation: their texts.
type Pending = Arc<Mutex<HashMap<Uuid, Vec<String>>>>;

async fn handle(ctx: Context, pending: Pending) -> conclave_client::api::Result<()> {
    let Some(command) = ctx.command.clone() else { return Ok(()) };
    let conversation = ctx.message.conversation_id;
    match command.name.as_str() {
        "help" => {
            ctx.reply("/remind <10s|5m|2h|1d> <text>: I say the text then. /reminders: what is pending here.").await?;
        }
        "reminders" => {
            let list = pending.lock().map(|p| p.get(&conversation).cloned().unwrap_or_default()).unwrap_or_default();
            let text =
                if list.is_empty() { "Nothing pending.".to_owned() } else { format!("Pending: {}", list.join("; ")) };
            ctx.reply(&text).await?;
        }
        "remind" => {
            let (Some(delay), Some(text)) =
                (command.args.first().and_then(|a| parse_delay(a)), rest_after_first(&command.rest))
            else {
                ctx.reply("Usage: /remind <10s|5m|2h|1d> <text>").await?;
                return Ok(());
            };
            let total: usize = pending.lock().map(|p| p.values().map(Vec::len).sum()).unwrap_or(MAX_PENDING);
            if total >= MAX_PENDING {
                ctx.reply("Too many reminders pending; try again later.").await?;
                return Ok(());
            }
            if let Ok(mut p) = pending.lock() {
                p.entry(conversation).or_default().push(text.clone());
            }
            ctx.react("⏰").await?;
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Ok(mut p) = pending.lock()
                    && let Some(list) = p.get_mut(&conversation)
                    && let Some(at) = list.iter().position(|t| *t == text)
                {
                    list.remove(at);
                }
                if let Err(err) = ctx.reply(&format!("⏰ {text}")).await {
                    eprintln!("reminder bot: a reminder could not be sent: {err}");
                }
            });
        }
        _ => ctx.react("🤔").await?,
    }
    Ok(())
}

/// `10s`, `5m`, `2h`, `1d`: at least a second, at most [`MAX_DELAY`].
fn parse_delay(text: &str) -> Option<Duration> {
    let split = text.len().checked_sub(1)?;
    let (number, unit) = text.split_at(split);
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    let delay = Duration::from_secs(number.parse::<u64>().ok()?.checked_mul(seconds)?);
    (delay >= Duration::from_secs(1) && delay <= MAX_DELAY).then_some(delay)
}

/// The text after the first argument, trimmed; `None` when there is none.
fn rest_after_first(rest: &str) -> Option<String> {
    let (_, text) = rest.split_once(char::is_whitespace)?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Completes on Ctrl-C or SIGTERM (what Kubernetes sends a pod it stops).
async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_have_a_number_and_a_unit_within_a_week() {
        assert_eq!(parse_delay("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_delay("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_delay("7d"), Some(MAX_DELAY));
        for bad in ["", "s", "0s", "8d", "10", "1w", "-1m", "1.5h", "99999999999999999999d"] {
            assert_eq!(parse_delay(bad), None, "{bad}");
        }
        assert_eq!(rest_after_first("10m  stand up "), Some("stand up".to_owned()));
        assert_eq!(rest_after_first("10m"), None);
    }
}
