//! Interactions: decoding, the command handlers, and the replies (Lantern's texts).

use crate::bot::privacy;
use crate::discord::Snowflake;
use crate::presence::privacy::{PrivacyChange, PrivacyError, PrivacySettings};
use crate::runtime::Peers;
use crate::shard::Shard;
use crate::storage::kv::{validate_key, validate_value, Auth, KvError, KvOp, UserKv, MAX_PAIRS};
use crate::storage::service::{StorageAnswer, StorageRequest};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use twilight_http::Client;
use twilight_model::application::command::{CommandOptionChoice, CommandOptionChoiceValue};
use twilight_model::application::interaction::application_command::{CommandData, CommandDataOption, CommandOptionValue};
use twilight_model::application::interaction::{Interaction, InteractionData, InteractionType};
use twilight_model::channel::message::component::{ActionRow, Button, ButtonStyle, Component};
use twilight_model::channel::message::{AllowedMentions, MessageFlags};
use twilight_model::http::attachment::Attachment;
use twilight_model::http::interaction::{InteractionResponse, InteractionResponseData, InteractionResponseType};
use twilight_model::id::Id;

/// Longest message content Discord accepts.
pub const MAX_CONTENT: usize = 2000;
/// Most autocomplete choices Discord accepts.
pub const MAX_CHOICES: usize = 25;
/// Longest autocomplete choice name and value.
pub const MAX_CHOICE_LEN: usize = 100;
/// Inline `/storage list` output longer than this goes out as an attachment (Lantern's cut-off).
pub const LIST_INLINE_MAX: usize = 1800;
/// The attachment's name.
pub const LIST_FILE: &str = "kv-storage.json";

pub const NO_STORAGE: &str = "We could not find your key-value storage data. Please create a storage first using `/storage create token`.";
pub const NO_USER: &str = "We could not find your user data. This generally means you are not in our Discord server.";
pub const NO_TOKEN: &str = "We could not find your token. Please create a new token using `/storage create token`.";
pub const FAILED: &str = "Something went wrong while accessing your key-value storage. Please try again later.";
/// Cluster mode, the cluster's store out of reach: nothing was written.
pub const UNAVAILABLE: &str = "Storage is unavailable right now, so nothing was saved. Please try again in a moment.";
pub const EMPTY_LIST: &str = "There is no data in your key-value storage.";
pub const LIST_ATTACHED: &str = "Here is the list of all the data in your key-value storage:";
pub const RESET_QUESTION: &str = "Are you sure you want to reset your key-value storage?";
pub const RESET_DONE: &str = "Your key-value storage has been reset.";
pub const RESET_CANCELLED: &str = "Your key-value storage reset has been cancelled.";
pub const NOT_YOUR_BUTTON: &str = "Only the member who ran this command can use these buttons.";
pub const CONFIRM_RESET: &str = "confirmResetStorage";
pub const CANCEL_RESET: &str = "cancelResetStorage";

/// Decodes an INTERACTION_CREATE gateway frame into twilight-model's interaction.
pub fn decode(frame: &str) -> Result<Interaction, serde_json::Error> {
    serde_json::from_str::<crate::discord::events::Dispatch<Interaction>>(frame).map(|f| f.d)
}

/// Replies are ephemeral in guilds, public in DMs.
fn ephemeral(interaction: &Interaction) -> bool {
    interaction.guild_id.is_some()
}

/// The command path (`storage create token`) and the options of its leaf.
pub fn command_path(data: &CommandData) -> (String, Vec<CommandDataOption>) {
    let mut name = data.name.clone();
    let mut options = data.options.clone();
    while let Some((sub, inner)) = options.first().and_then(|o| match &o.value {
        CommandOptionValue::SubCommand(inner) | CommandOptionValue::SubCommandGroup(inner) => Some((o.name.clone(), inner.clone())),
        _ => None,
    }) {
        name.push(' ');
        name.push_str(&sub);
        options = inner;
    }
    (name, options)
}

fn string_option(options: &[CommandDataOption], name: &str) -> Option<String> {
    options.iter().find(|o| o.name == name).and_then(|o| match &o.value {
        CommandOptionValue::String(s) => Some(s.clone()),
        _ => None,
    })
}

/// What was typed in the focused option of an autocomplete, at any depth.
fn focused(options: &[CommandDataOption]) -> Option<&str> {
    options.iter().find_map(|o| match &o.value {
        CommandOptionValue::Focused(typed, _) => Some(typed.as_str()),
        CommandOptionValue::SubCommand(inner) | CommandOptionValue::SubCommandGroup(inner) => focused(inner),
        _ => None,
    })
}

/// The focused option of an autocomplete among `options` (a leaf's): its name and what was typed.
fn focused_option(options: &[CommandDataOption]) -> Option<(&str, &str)> {
    options.iter().find_map(|o| match &o.value {
        CommandOptionValue::Focused(typed, _) => Some((o.name.as_str(), typed.as_str())),
        _ => None,
    })
}

/// Keys offered for what was typed: those starting with it (ignoring case), in order, at most
/// [`MAX_CHOICES`], and only keys short enough to be a choice.
pub fn suggest<'a>(keys: impl IntoIterator<Item = &'a String>, typed: &str) -> Vec<String> {
    let typed = typed.to_ascii_lowercase();
    keys.into_iter()
        .filter(|k| k.len() <= MAX_CHOICE_LEN && k.to_ascii_lowercase().starts_with(&typed))
        .take(MAX_CHOICES)
        .cloned()
        .collect()
}

/// Cuts `value` so that `before + value + after` fits in one message, marking the cut.
pub fn fit(before: &str, value: &str, after: &str) -> String {
    let budget = MAX_CONTENT.saturating_sub(before.chars().count() + after.chars().count());
    if value.chars().count() <= budget {
        return format!("{before}{value}{after}");
    }
    let note = " (shortened)";
    let keep = budget.saturating_sub(1 + note.chars().count());
    let cut: String = value.chars().take(keep).collect();
    format!("{before}{cut}…{after}{note}")
}

/// The pairs as pretty JSON (valid JSON, unlike Lantern's quote-only escaping).
pub fn list_json(pairs: &BTreeMap<String, String>) -> String {
    serde_json::to_string_pretty(pairs).unwrap_or_else(|_| "{}".into())
}

/// A reply the bot sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Text(String),
    /// Text plus a file attachment.
    File { content: String, name: &'static str, body: Vec<u8> },
    /// The reset question with its buttons, bound to the invoking user.
    ResetPrompt(Snowflake),
    /// Replace the message a button belongs to (and remove its buttons).
    Update(String),
    /// Autocomplete choices: (what is shown, the value it sets).
    Choices(Vec<(String, String)>),
}

/// The shared state of the bot's tasks.
pub struct Context {
    pub client: Client,
    pub application_id: Option<Snowflake>,
    pub shards: Peers<Shard>,
}

fn storage_failure(e: KvError) -> String {
    match e {
        KvError::NoStorage | KvError::Unauthorized => NO_STORAGE.into(),
        KvError::NotMonitored => NO_USER.into(),
        KvError::NoKey(key) => format!("We could not find the data for the key `{key}`."),
        KvError::TooManyPairs => format!("Your key-value storage is full: it can hold at most {MAX_PAIRS} key-value pairs."),
        KvError::TooLarge(max) => format!("Your key-value storage is full: it can hold at most {max} bytes of JSON."),
        KvError::InvalidKey(m) | KvError::InvalidValue(m) => format!("Invalid key-value pair: {m}"),
        KvError::Internal(reason) => {
            tracing::error!(%reason, "storage request from the bot failed");
            FAILED.into()
        }
        KvError::Unavailable(reason) => {
            tracing::warn!(%reason, "storage request from the bot refused: the cluster's store is unavailable");
            UNAVAILABLE.into()
        }
    }
}

impl Context {
    async fn storage(&self, user: Snowflake, req: StorageRequest) -> Result<StorageAnswer, KvError> {
        // The owner shard of the user answers, from this (the gateway's) thread.
        self.shards
            .ask_owner(user, move |s, owned| async move { s.owned_storage(owned, req).await })
            .await
            .unwrap_or_else(|_| Err(KvError::Internal("the owner shard has stopped".into())))
    }

    async fn write(&self, user: Snowflake, op: KvOp) -> Result<StorageAnswer, KvError> {
        self.storage(user, StorageRequest::Write { auth: Auth::Owner, op }).await
    }

    async fn pairs(&self, user: Snowflake) -> Result<Arc<UserKv>, KvError> {
        match self.storage(user, StorageRequest::Pairs).await? {
            StorageAnswer::Pairs(p) => Ok(p),
            _ => Err(KvError::Internal("unexpected storage answer".into())),
        }
    }

    /// Handles one interaction and answers it.
    pub async fn handle(&self, interaction: Interaction, latency: Option<Duration>) {
        let started = Instant::now();
        let Some((user, username)) = interaction.author().map(|u| (Snowflake(u.id.get()), u.name.clone())) else {
            tracing::warn!("interaction without a user");
            return;
        };
        let (reply, what) = match (interaction.kind, interaction.data.as_ref()) {
            (InteractionType::ApplicationCommand, Some(InteractionData::ApplicationCommand(data))) => {
                let (name, options) = command_path(data);
                (self.command(&name, &options, user, latency).await, name)
            }
            (InteractionType::ApplicationCommandAutocomplete, Some(InteractionData::ApplicationCommand(data))) if data.name == "privacy" => {
                let (_, options) = command_path(data);
                let choices = match focused_option(&options) {
                    Some((name, typed)) => {
                        let setting = string_option(&options, "setting");
                        privacy::suggest(name, typed, setting.as_deref())
                    }
                    None => Vec::new(),
                };
                // Discord refuses the whole answer if one choice is too long.
                let fits = |(name, value): &(String, String)| name.chars().count() <= MAX_CHOICE_LEN && value.chars().count() <= MAX_CHOICE_LEN;
                (Reply::Choices(choices.into_iter().filter(fits).take(MAX_CHOICES).collect()), "autocomplete".into())
            }
            (InteractionType::ApplicationCommandAutocomplete, Some(InteractionData::ApplicationCommand(data))) => {
                let typed = focused(&data.options).unwrap_or("").to_owned();
                let choices = match self.pairs(user).await {
                    Ok(pairs) => suggest(pairs.keys(), &typed),
                    Err(_) => Vec::new(),
                };
                (Reply::Choices(choices.into_iter().map(|k| (k.clone(), k)).collect()), "autocomplete".into())
            }
            (InteractionType::MessageComponent, Some(InteractionData::MessageComponent(data))) => {
                let custom_id = data.custom_id.as_str();
                (self.component(custom_id, user).await, format!("button {}", custom_id.split(':').next().unwrap_or("")))
            }
            _ => return,
        };
        // `/ping` answers publicly, as Lantern's does; everything else is private in guilds,
        // and a member's privacy settings are private everywhere.
        let response = response(reply, (ephemeral(&interaction) && what != "ping") || what.starts_with("privacy"));
        let app = self.application_id.and_then(|a| Id::new_checked(a.0)).unwrap_or(interaction.application_id);
        let sent = self.client.interaction(app).create_response(interaction.id, &interaction.token, &response).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match sent {
            Ok(_) => tracing::info!(user = %username, user_id = %user, interaction = %what,
                guild = ?interaction.guild_id.map(|g| g.get()), elapsed_ms, "answered an interaction"),
            Err(e) => tracing::warn!(user_id = %user, interaction = %what, error = %e, "could not answer an interaction"),
        }
    }

    /// Reads or changes the privacy settings of `user` (the member who ran the command) on
    /// their owner shard.
    async fn privacy(&self, user: Snowflake, change: Option<PrivacyChange>) -> Result<PrivacySettings, PrivacyError> {
        self.shards
            .ask_owner(user, move |s, owned| async move { s.owned_privacy(owned, Auth::Owner, change).await })
            .await
            .unwrap_or_else(|_| Err(PrivacyError::Internal("the owner shard has stopped".into())))
    }

    async fn privacy_command(&self, sub: &str, options: &[CommandDataOption], user: Snowflake) -> Reply {
        let setting = string_option(options, "setting");
        let value = string_option(options, "value");
        let change = match privacy::change_for(sub, setting.as_deref(), value.as_deref()) {
            Ok(change) => change,
            Err(m) => return Reply::Text(m),
        };
        let before = if sub == "pause" || sub == "resume" {
            match self.privacy(user, None).await {
                Ok(s) => Some(s.paused),
                Err(e) => return Reply::Text(privacy::failure(e)),
            }
        } else {
            None
        };
        // Pausing twice (or resuming when not paused) changes nothing.
        let change = if before == Some(sub == "pause") { None } else { change };
        Reply::Text(match self.privacy(user, change).await {
            Ok(now) => privacy::answer(sub, before, &now),
            Err(e) => privacy::failure(e),
        })
    }

    async fn command(&self, name: &str, options: &[CommandDataOption], user: Snowflake, latency: Option<Duration>) -> Reply {
        if let Some(sub) = name.strip_prefix("privacy ") {
            return self.privacy_command(sub, options, user).await;
        }
        let key = string_option(options, "key");
        let value = string_option(options, "value");
        let text = match name {
            "ping" => match latency {
                Some(l) => format!("Pong! {} ms.", l.as_millis()),
                None => "Pong! (no heartbeat round trip measured yet)".into(),
            },
            "storage create token" => match self.write(user, KvOp::RotateToken).await {
                Ok(StorageAnswer::Written(Some(token))) => format!(
                    "We have created a new token for your key-value storage.\n```\n{}\n```\n-# Please keep this token safe.",
                    token.expose()
                ),
                Ok(_) => FAILED.into(),
                Err(e) => storage_failure(e),
            },
            "storage get token" => match self.storage(user, StorageRequest::GetToken).await {
                Ok(StorageAnswer::Token(Some(token))) => {
                    format!("Here is your token for your key-value storage.\n```\n{}\n```\n-# Please keep this token safe.", token.expose())
                }
                Ok(_) => NO_TOKEN.into(),
                Err(e) => storage_failure(e),
            },
            "storage create data" | "storage update data" => {
                let (Some(key), Some(value)) = (key, value) else { return Reply::Text("Both a key and a value are required.".into()) };
                if let Err(e) = validate_key(&key).and_then(|_| validate_value(&value)) {
                    return Reply::Text(storage_failure(e));
                }
                let create = name == "storage create data";
                let op = if create { KvOp::Put { key: key.clone(), value: value.clone() } } else { KvOp::Patch { key: key.clone(), value: value.clone() } };
                match self.write(user, op).await {
                    Ok(_) if create => fit(&format!("New key-value pair added to your storage: `{key}` -> `"), &value, "`"),
                    Ok(_) => fit(&format!("Data for the key `{key}` updated to `"), &value, "`."),
                    Err(e) => storage_failure(e),
                }
            }
            "storage get data" => {
                let Some(key) = key else { return Reply::Text("A key is required.".into()) };
                match self.pairs(user).await {
                    Ok(pairs) => match pairs.get(&key).map(|p| p.value()) {
                        None => format!("We could not find the data for the key `{key}`."),
                        Some(value) => {
                            let text = format!("Here is the data for the key `{key}`: `{value}`");
                            if text.chars().count() <= MAX_CONTENT {
                                text
                            } else {
                                let one = BTreeMap::from([(key.clone(), value.clone())]);
                                return Reply::File {
                                    content: format!("Here is the data for the key `{key}`:"),
                                    name: LIST_FILE,
                                    body: list_json(&one).into_bytes(),
                                };
                            }
                        }
                    },
                    Err(e) => storage_failure(e),
                }
            }
            "storage delete data" => {
                let Some(key) = key else { return Reply::Text("A key is required.".into()) };
                match self.write(user, KvOp::Delete { key: key.clone() }).await {
                    Ok(_) => format!("Data for the key `{key}` deleted."),
                    Err(e) => storage_failure(e),
                }
            }
            "storage list" => match self.pairs(user).await {
                Ok(pairs) if pairs.is_empty() => EMPTY_LIST.into(),
                Ok(pairs) => {
                    let json = list_json(&pairs.to_map());
                    if json.chars().count() > LIST_INLINE_MAX {
                        return Reply::File { content: LIST_ATTACHED.into(), name: LIST_FILE, body: json.into_bytes() };
                    }
                    format!("```json\n{json}\n```")
                }
                Err(e) => storage_failure(e),
            },
            "storage reset" => match self.pairs(user).await {
                Ok(_) => return Reply::ResetPrompt(user),
                Err(e) => storage_failure(e),
            },
            _ => "Unknown command.".into(),
        };
        Reply::Text(text)
    }

    async fn component(&self, custom_id: &str, user: Snowflake) -> Reply {
        let (action, owner) = custom_id.split_once(':').unwrap_or((custom_id, ""));
        if action != CONFIRM_RESET && action != CANCEL_RESET {
            return Reply::Text("This button is no longer supported.".into());
        }
        if owner != user.to_string() {
            return Reply::Text(NOT_YOUR_BUTTON.into());
        }
        if action == CANCEL_RESET {
            return Reply::Update(RESET_CANCELLED.into());
        }
        match self.write(user, KvOp::Clear).await {
            Ok(_) => Reply::Update(RESET_DONE.into()),
            Err(e) => Reply::Update(storage_failure(e)),
        }
    }
}

fn button(custom_id: String, label: &str, style: ButtonStyle) -> Component {
    Component::Button(Button {
        custom_id: Some(custom_id),
        disabled: false,
        emoji: None,
        id: None,
        label: Some(label.into()),
        sku_id: None,
        style,
        url: None,
    })
}

/// The callback body for a reply.
pub fn response(reply: Reply, ephemeral: bool) -> InteractionResponse {
    let flags = ephemeral.then_some(MessageFlags::EPHEMERAL);
    // Values are echoed back: never let them ping anyone.
    let no_mentions = Some(AllowedMentions::default());
    let message = |content: String| InteractionResponseData {
        content: Some(content),
        flags,
        allowed_mentions: no_mentions.clone(),
        ..Default::default()
    };
    match reply {
        Reply::Text(content) => InteractionResponse { kind: InteractionResponseType::ChannelMessageWithSource, data: Some(message(content)) },
        Reply::File { content, name, body } => InteractionResponse {
            kind: InteractionResponseType::ChannelMessageWithSource,
            data: Some(InteractionResponseData {
                attachments: Some(vec![Attachment::from_bytes(name.to_owned(), body, 0)]),
                ..message(content)
            }),
        },
        Reply::ResetPrompt(user) => InteractionResponse {
            kind: InteractionResponseType::ChannelMessageWithSource,
            data: Some(InteractionResponseData {
                components: Some(vec![Component::ActionRow(ActionRow {
                    components: vec![
                        button(format!("{CONFIRM_RESET}:{user}"), "Confirm", ButtonStyle::Success),
                        button(format!("{CANCEL_RESET}:{user}"), "Cancel", ButtonStyle::Danger),
                    ],
                    id: None,
                })]),
                ..message(RESET_QUESTION.into())
            }),
        },
        Reply::Update(content) => InteractionResponse {
            kind: InteractionResponseType::UpdateMessage,
            data: Some(InteractionResponseData {
                content: Some(content),
                components: Some(Vec::new()),
                allowed_mentions: no_mentions,
                ..Default::default()
            }),
        },
        Reply::Choices(choices) => InteractionResponse {
            kind: InteractionResponseType::ApplicationCommandAutocompleteResult,
            data: Some(InteractionResponseData {
                choices: Some(
                    choices
                        .into_iter()
                        .map(|(name, value)| CommandOptionChoice { name, name_localizations: None, value: CommandOptionChoiceValue::String(value) })
                        .collect(),
                ),
                ..Default::default()
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_options() {
        let data: CommandData = serde_json::from_value(serde_json::json!({
            "id": "1", "name": "storage", "type": 1,
            "options": [{"name": "create", "type": 2, "options": [{"name": "data", "type": 1, "options": [
                {"name": "key", "type": 3, "value": "k"}, {"name": "value", "type": 3, "value": "v"}]}]}]
        }))
        .unwrap();
        let (name, options) = command_path(&data);
        assert_eq!(name, "storage create data");
        assert_eq!(string_option(&options, "key").as_deref(), Some("k"));
        assert_eq!(string_option(&options, "nope"), None);
        let (name, _) = command_path(&serde_json::from_value(serde_json::json!({"id": "1", "name": "storage", "type": 1, "options": [{"name": "list", "type": 1}]})).unwrap());
        assert_eq!(name, "storage list");
    }

    /// An INTERACTION_CREATE frame as the gateway sends it, `d` completed with `fields`.
    fn frame(fields: serde_json::Value) -> String {
        let mut d = serde_json::json!({
            "id": "1400000000000000001", "application_id": "1378135304107458561", "type": 2, "token": "itoken",
            "version": 1, "locale": "en-US", "app_permissions": "0", "entitlements": [], "attachment_size_limit": 8388608,
            "authorizing_integration_owners": {}, "context": 0, "guild_id": "1378135304107458560", "channel_id": "1378135304107458560",
            "member": {"user": {"id": "1300000000000000001", "username": "alice", "discriminator": "0", "global_name": "Alice", "avatar": null},
                "roles": [], "joined_at": "2021-05-03T00:00:00.000000+00:00", "deaf": false, "mute": false, "flags": 0, "permissions": "0"},
        });
        for (k, v) in fields.as_object().unwrap() {
            d[k] = v.clone();
        }
        serde_json::json!({"op": 0, "s": 3, "t": "INTERACTION_CREATE", "d": d}).to_string()
    }

    #[test]
    fn decodes_gateway_frames_into_twilight_interactions() {
        let command = decode(&frame(serde_json::json!({"data": {"id": "2", "name": "storage", "type": 1,
            "options": [{"name": "list", "type": 1}]}}))).unwrap();
        assert_eq!(command.kind, InteractionType::ApplicationCommand);
        assert_eq!(command.author().map(|u| (u.id.get(), u.name.as_str())), Some((1_300_000_000_000_000_001, "alice")));
        assert!(ephemeral(&command));
        let Some(InteractionData::ApplicationCommand(data)) = &command.data else { panic!("{command:?}") };
        assert_eq!(command_path(data).0, "storage list");

        // Autocomplete: the focused option, however deep, is what was typed.
        let auto = decode(&frame(serde_json::json!({"type": 4, "data": {"id": "2", "name": "storage", "type": 1,
            "options": [{"name": "get", "type": 2, "options": [{"name": "data", "type": 1, "options": [
                {"name": "key", "type": 3, "value": "al", "focused": true}]}]}]}}))).unwrap();
        let Some(InteractionData::ApplicationCommand(data)) = &auto.data else { panic!("{auto:?}") };
        assert_eq!(focused(&data.options), Some("al"));

        // A button in DMs: the user is at the top level and replies are public.
        let button = frame(serde_json::json!({"type": 3, "data": {"custom_id": "cancelResetStorage:1", "component_type": 2},
            "context": 1, "user": {"id": "1300000000000000002", "username": "bob", "discriminator": "0", "global_name": null, "avatar": null}}));
        let mut v: serde_json::Value = serde_json::from_str(&button).unwrap();
        for k in ["guild_id", "member"] {
            v["d"].as_object_mut().unwrap().remove(k);
        }
        let button = decode(&v.to_string()).unwrap();
        assert!(!ephemeral(&button));
        assert_eq!(button.author().map(|u| u.id.get()), Some(1_300_000_000_000_000_002));
        let Some(InteractionData::MessageComponent(data)) = &button.data else { panic!("{button:?}") };
        assert_eq!(data.custom_id, "cancelResetStorage:1");

        assert!(decode(r#"{"op":0,"t":"INTERACTION_CREATE","d":{"id":"1"}}"#).is_err());
    }

    #[test]
    fn suggestions_filter_by_prefix_and_cap_at_25() {
        let keys: Vec<String> = (0..30).map(|i| format!("alpha{i}")).chain((0..5).map(|i| format!("beta{i}"))).chain(["a".repeat(101)]).collect();
        assert_eq!(suggest(&keys, "").len(), 25);
        assert_eq!(suggest(&keys, "BE"), vec!["beta0", "beta1", "beta2", "beta3", "beta4"]);
        assert!(suggest(&keys, "alpha").iter().all(|k| k.starts_with("alpha")));
        assert!(suggest(&keys, "aaaa").is_empty(), "a key over 100 characters cannot be a choice");
    }

    #[test]
    fn long_echoes_fit_in_one_message() {
        let v = "x".repeat(5000);
        let text = fit("New key-value pair added to your storage: `k` -> `", &v, "`");
        assert!(text.chars().count() <= MAX_CONTENT);
        assert!(text.ends_with("(shortened)"));
        assert_eq!(fit("a `", "b", "`"), "a `b`");
    }
}
