//! `/name args` commands, as people type them to a bot.

/// A command: `/remind 10m stand up` is `name = "remind"`, `args = ["10m", "stand", "up"]`,
/// `rest = "10m stand up"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The command's name, lower-cased, without the slash (or the `@bot` suffix some clients add).
    pub name: String,
    /// The words after it; a double-quoted span (`"stand up"`) is one word.
    pub args: Vec<String>,
    /// Everything after the name, trimmed, as typed.
    pub rest: String,
}

/// The longest command name read; anything longer is not a command.
const MAX_NAME: usize = 32;

impl Command {
    /// Reads a command from a message's text: a slash, a name of ASCII letters, digits, `_` or
    /// `-` (optionally `@` and a bot's name), then the arguments. Anything else is no command
    /// (`None`), so ordinary messages, paths (`/usr/bin`) and a lone slash pass by.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let body = text.strip_prefix('/')?;
        let (head, rest) = match body.find(char::is_whitespace) {
            Some(at) => (&body[..at], body[at..].trim()),
            None => (body, ""),
        };
        let name = head.split_once('@').map_or(head, |(name, _)| name);
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(valid) {
            return None;
        }
        Some(Self { name: name.to_ascii_lowercase(), args: split_args(rest), rest: rest.to_owned() })
    }
}

/// Words separated by whitespace; a double-quoted span is one word (an unclosed quote runs to the end).
fn split_args(rest: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in rest.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    args.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            c => {
                current.push(c);
                started = true;
            }
        }
    }
    if started {
        args.push(current);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_command_has_a_name_arguments_and_the_rest_as_typed() {
        let command = Command::parse("  /Remind 10m  \"stand up\" now ").expect("a command");
        assert_eq!(command.name, "remind");
        assert_eq!(command.args, words(&["10m", "stand up", "now"]));
        assert_eq!(command.rest, "10m  \"stand up\" now");
        let bare = Command::parse("/help").expect("a command");
        assert_eq!((bare.name.as_str(), bare.args.len(), bare.rest.as_str()), ("help", 0, ""));
        assert_eq!(Command::parse("/poll@reminder-bot a b").expect("addressed").name, "poll");
        assert_eq!(Command::parse("/say \"\"").expect("empty quotes").args, words(&[""]));
        assert_eq!(Command::parse("/say \"open").expect("unclosed").args, words(&["open"]));
    }

    #[test]
    fn ordinary_text_paths_and_odd_names_are_no_commands() {
        for text in
            ["hello", "", "/", "/ help", "//x", "/usr/bin", "/héllo", "a /help", &format!("/{}", "x".repeat(33))]
        {
            assert_eq!(Command::parse(text), None, "{text:?}");
        }
    }
}
