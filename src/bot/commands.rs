//! The bot's global slash commands, and `lantern commands register|unregister`.

use crate::config::Config;
use twilight_model::application::command::{Command, CommandOption, CommandOptionType, CommandType};
use twilight_model::id::Id;

fn option(kind: CommandOptionType, name: &str, description: &str) -> CommandOption {
    CommandOption {
        autocomplete: None,
        channel_types: None,
        choices: None,
        description: description.into(),
        description_localizations: None,
        kind,
        max_length: None,
        max_value: None,
        min_length: None,
        min_value: None,
        name: name.into(),
        name_localizations: None,
        options: None,
        file_types: None,
        required: None,
    }
}

fn sub(name: &str, description: &str, options: Vec<CommandOption>) -> CommandOption {
    CommandOption { options: Some(options), ..option(CommandOptionType::SubCommand, name, description) }
}

fn group(name: &str, description: &str, subs: Vec<CommandOption>) -> CommandOption {
    CommandOption { options: Some(subs), ..option(CommandOptionType::SubCommandGroup, name, description) }
}

fn key(description: &str, autocomplete: bool) -> CommandOption {
    CommandOption {
        autocomplete: autocomplete.then_some(true),
        required: Some(true),
        min_length: Some(1),
        max_length: Some(crate::storage::kv::MAX_KEY_LEN as u16),
        ..option(CommandOptionType::String, "key", description)
    }
}

fn value(description: &str) -> CommandOption {
    // Discord caps a string option at 6,000 characters; longer values go through REST.
    CommandOption { required: Some(true), max_length: Some(6000), ..option(CommandOptionType::String, "value", description) }
}

#[allow(deprecated)]
fn command(name: &str, description: &str, options: Vec<CommandOption>) -> Command {
    Command {
        application_id: None,
        contexts: None,
        default_member_permissions: None,
        description: description.into(),
        description_localizations: None,
        dm_permission: Some(true),
        guild_id: None,
        id: None,
        integration_types: None,
        kind: CommandType::ChatInput,
        name: name.into(),
        name_localizations: None,
        nsfw: None,
        options,
        version: Id::new(1),
    }
}

fn privacy_option(name: &str, description: &str, max_length: u16) -> CommandOption {
    CommandOption {
        autocomplete: Some(true),
        required: Some(true),
        min_length: Some(1),
        max_length: Some(max_length),
        ..option(CommandOptionType::String, name, description)
    }
}

/// `/privacy show|set|pause|resume`.
fn privacy() -> Command {
    command(
        "privacy",
        "Choose what Lantern shows about you.",
        vec![
            sub("show", "Show your privacy settings.", Vec::new()),
            sub(
                "set",
                "Hide or show one part of your presence.",
                vec![
                    privacy_option("setting", "What to hide or show.", 32),
                    // Room for the most application ids a member may hide, comma-separated.
                    privacy_option("value", "on / off, or a comma-separated list (none to clear).", 1000),
                ],
            ),
            sub("pause", "Stop showing you anywhere until you resume.", Vec::new()),
            sub("resume", "Show you again.", Vec::new()),
        ],
    )
}

/// `/ping`, `/storage …` (with Lantern's names and descriptions) and `/privacy …`.
pub fn definitions() -> Vec<Command> {
    vec![
        command("ping", "Pong!", Vec::new()),
        command(
            "storage",
            "Key-value storage commands.",
            vec![
                group(
                    "create",
                    "Create a token or data for your key-value storage.",
                    vec![
                        sub("token", "Create a new token for your key-value storage.", Vec::new()),
                        sub(
                            "data",
                            "Create a new data for your key-value storage.",
                            vec![key("The key for the data.", false), value("The value for the data.")],
                        ),
                    ],
                ),
                group(
                    "get",
                    "Get the token or data of your key-value storage.",
                    vec![
                        sub("token", "Get the token for your key-value storage.", Vec::new()),
                        sub("data", "Get the data for your key-value storage.", vec![key("The key for the data.", true)]),
                    ],
                ),
                group(
                    "update",
                    "Update data in your key-value storage.",
                    vec![sub(
                        "data",
                        "Update the data for your key-value storage.",
                        vec![key("The key for the data.", true), value("The new value for the data.")],
                    )],
                ),
                group(
                    "delete",
                    "Delete data from your key-value storage.",
                    vec![sub("data", "Delete the data for your key-value storage.", vec![key("The key for the data.", true)])],
                ),
                sub("list", "List all the data in your key-value storage.", Vec::new()),
                sub("reset", "Reset your key-value storage.", Vec::new()),
            ],
        ),
        privacy(),
    ]
}

/// Sets the global commands (`register`) or removes them all (`unregister`). Returns the
/// names now registered.
pub fn run(config: &Config, register: bool) -> Result<Vec<String>, String> {
    let app = config
        .application_id
        .ok_or("invalid setting `application_id`: missing; `lantern commands` needs the bot's application id")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let client = super::http_client(config);
        let commands = if register { definitions() } else { Vec::new() };
        let app = Id::new_checked(app.0).ok_or("invalid setting `application_id`: must not be 0")?;
        let set = client
            .interaction(app)
            .set_global_commands(&commands)
            .await
            .map_err(|e| format!("Discord refused the commands: {e}"))?
            .models()
            .await
            .map_err(|e| format!("unexpected answer from Discord: {e}"))?;
        Ok(set.into_iter().map(|c| c.name).collect())
    })
}
