//! `ldap`: SCIM 2.0 in front of an LDAP directory, as one endpoint
//! component, `ldap/directory`. The SCIM protocol is the shared engine's
//! (`scimgate-scim-service`); this crate is its [`backend::LdapBackend`]:
//! Users as `inetOrgPerson`, Groups as `groupOfNames`, filters pushed down
//! as LDAP filters, paged reads, directory errors as SCIM errors.

pub mod backend;
pub mod config;
pub mod conn;
pub mod endpoint;
pub mod filter;
pub mod mapping;

use scimgate_abi::sdk::{Component, CreateContext};

pub use backend::LdapBackend;
pub use config::LdapConfig;

fn components() -> Vec<Component> {
    vec![Component::endpoint_with_config(
        "directory",
        "SCIM 2.0 service provider in front of an LDAP directory: Users as inetOrgPerson, Groups as groupOfNames",
        |config: LdapConfig, ctx: &CreateContext| endpoint::create(config, ctx),
    )
    .with_validate(|ctx: &CreateContext| match ctx.deserialize::<LdapConfig>() {
        Ok(config) => config.check(),
        Err(_) => Vec::new(),
    })
    .with_schema(CONFIG_SCHEMA)]
}

scimgate_abi::export_plugin!("ldap", components);

const CONFIG_SCHEMA: &str = r#"{"type":"object","additionalProperties":false,"required":["url","bind_dn","users_base","groups_base"],"properties":{
"url":{"type":"string"},
"starttls":{"type":"boolean","default":false},
"ca_file":{"type":"string"},
"bind_dn":{"type":"string"},
"bind_password":{"type":"string"},
"pool_size":{"type":"integer","minimum":1,"maximum":256,"default":4},
"connect_timeout":{"type":["integer","string"],"default":"5s"},
"operation_timeout":{"type":["integer","string"],"default":"30s"},
"page_size":{"type":"integer","minimum":1,"default":500},
"users_base":{"type":"string"},
"groups_base":{"type":"string"},
"user_object_classes":{"type":"array","items":{"type":"string"},"default":["top","person","organizationalPerson","inetOrgPerson"]},
"group_object_classes":{"type":"array","items":{"type":"string"},"default":["top","groupOfNames"]},
"user_rdn":{"type":"string","default":"uid"},
"group_rdn":{"type":"string","default":"cn"},
"id_attribute":{"type":"string","default":"entryUUID"},
"user_attributes":{"type":"object","additionalProperties":{"type":"string"}},
"group_attributes":{"type":"object","additionalProperties":{"type":"string"}},
"empty_group_member":{"type":"string"},
"missing_surname":{"type":"string","default":"-"},
"max_results":{"type":"integer","minimum":1,"default":200},
"default_page_size":{"type":"integer","minimum":1,"default":100},
"bulk":{"type":"object","properties":{"enabled":{"type":"boolean","default":true},"max_operations":{"type":"integer","default":1000},"max_payload_size":{"type":"integer","default":1048576}}},
"patch_response":{"enum":["resource","no-content"],"default":"resource"},
"unique_group_names":{"type":"boolean","default":true},
"me":{"type":"boolean","default":false},
"cursor_timeout":{"type":["integer","string"],"default":"10m"},
"password_storage":{"enum":["hash","drop","refuse","backend"],"default":"hash"},
"max_scan":{"type":"integer","minimum":1,"default":100000},
"documentation_uri":{"type":"string"}}}"#;
