pub use super::api_key::Entity as ApiKey;
pub use super::pronunciation::Entity as Pronunciation;
pub use super::setting::Entity as Setting;
pub use super::usage::Entity as Usage;
pub use super::voice::Entity as Voice;
