//! The RFC 7643 §4 and §8.7.1 schemas: core User, Group, Enterprise User, and the
//! common attributes (`id`, `externalId`, `meta`) every resource carries (§3.1).

use crate::schema::{AttrType, Attribute, Mutability, Returned, Schema, Uniqueness};
use crate::urn;
use std::sync::OnceLock;

fn string(name: &str, description: &str) -> Attribute {
    Attribute::new(name, AttrType::String).describe(description)
}

fn boolean(name: &str, description: &str) -> Attribute {
    Attribute::new(name, AttrType::Boolean).describe(description)
}

fn complex(name: &str, description: &str, subs: Vec<Attribute>) -> Attribute {
    Attribute::new(name, AttrType::Complex)
        .describe(description)
        .with_sub_attributes(subs)
}

/// The `value`/`display`/`type`/`primary` quartet of RFC 7643 §2.4.
fn multi_valued(name: &str, description: &str, value: Attribute, types: &[&str]) -> Attribute {
    complex(
        name,
        description,
        vec![
            value,
            string("display", "A human-readable name, primarily used for display purposes."),
            string("type", "A label indicating the attribute's function.").canonical(types),
            boolean("primary", "A Boolean value indicating the 'primary' or preferred attribute value for this attribute."),
        ],
    )
    .multi()
}

/// The RFC 7643 §4.1 User schema.
pub fn user_schema() -> Schema {
    let name = complex(
        "name",
        "The components of the user's real name.",
        vec![
            string("formatted", "The full name, including all middle names, titles, and suffixes as appropriate, formatted for display."),
            string("familyName", "The family name of the User, or last name in most Western languages."),
            string("givenName", "The given name of the User, or first name in most Western languages."),
            string("middleName", "The middle name(s) of the User."),
            string("honorificPrefix", "The honorific prefix(es) of the User, or title in most Western languages."),
            string("honorificSuffix", "The honorific suffix(es) of the User, or suffix in most Western languages."),
        ],
    );
    let addresses = complex(
        "addresses",
        "A physical mailing address for this User.",
        vec![
            string("formatted", "The full mailing address, formatted for display or use with a mailing label."),
            string("streetAddress", "The full street address component."),
            string("locality", "The city or locality component."),
            string("region", "The state or region component."),
            string("postalCode", "The zip code or postal code component."),
            string("country", "The country name component."),
            string("type", "A label indicating the attribute's function, e.g., 'work' or 'home'.").canonical(&["work", "home", "other"]),
            boolean("primary", "A Boolean value indicating the 'primary' or preferred attribute value for this attribute."),
        ],
    )
    .multi();
    let groups = complex(
        "groups",
        "A list of groups to which the user belongs, either through direct membership, through nested groups, or dynamically calculated.",
        vec![
            string("value", "The identifier of the User's group.").mutability(Mutability::ReadOnly),
            Attribute::new("$ref", AttrType::Reference)
                .describe("The URI of the corresponding 'Group' resource to which the user belongs.")
                .references(&["User", "Group"])
                .mutability(Mutability::ReadOnly),
            string("display", "A human-readable name, primarily used for display purposes.").mutability(Mutability::ReadOnly),
            string("type", "A label indicating the attribute's function, e.g., 'direct' or 'indirect'.")
                .canonical(&["direct", "indirect"])
                .mutability(Mutability::ReadOnly),
        ],
    )
    .multi()
    .mutability(Mutability::ReadOnly);
    Schema {
        id: urn::USER.to_string(),
        name: "User".to_string(),
        description: "User Account".to_string(),
        attributes: vec![
            string("userName", "Unique identifier for the User, typically used by the user to directly authenticate to the service provider.")
                .required()
                .uniqueness(Uniqueness::Server),
            name,
            string("displayName", "The name of the User, suitable for display to end-users."),
            string("nickName", "The casual way to address the user in real life."),
            Attribute::new("profileUrl", AttrType::Reference)
                .describe("A fully qualified URL pointing to a page representing the User's online profile.")
                .references(&["external"]),
            string("title", "The user's title, such as \"Vice President\"."),
            string("userType", "Used to identify the relationship between the organization and the user."),
            string("preferredLanguage", "Indicates the User's preferred written or spoken language."),
            string("locale", "Used to indicate the User's default location for purposes of localizing items such as currency, date time format, or numerical representations."),
            string("timezone", "The User's time zone in the 'Olson' time zone database format, e.g., 'America/Los_Angeles'."),
            boolean("active", "A Boolean value indicating the User's administrative status."),
            string("password", "The User's cleartext password.")
                .mutability(Mutability::WriteOnly)
                .returned(Returned::Never),
            multi_valued("emails", "Email addresses for the user.", string("value", "Email addresses for the user."), &["work", "home", "other"]),
            multi_valued("phoneNumbers", "Phone numbers for the User.", string("value", "Phone number of the User."), &["work", "home", "mobile", "fax", "pager", "other"]),
            multi_valued("ims", "Instant messaging addresses for the User.", string("value", "Instant messaging address for the User."), &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]),
            multi_valued(
                "photos",
                "URLs of photos of the User.",
                Attribute::new("value", AttrType::Reference).describe("URL of a photo of the User.").references(&["external"]),
                &["photo", "thumbnail"],
            ),
            addresses,
            groups,
            multi_valued("entitlements", "A list of entitlements for the User that represent a thing the User has.", string("value", "The value of an entitlement."), &[]),
            multi_valued("roles", "A list of roles for the User that collectively represent who the User is.", string("value", "The value of a role."), &[]),
            multi_valued(
                "x509Certificates",
                "A list of certificates issued to the User.",
                Attribute::new("value", AttrType::Binary).describe("The value of an X.509 certificate."),
                &[],
            ),
        ],
    }
}

/// The RFC 7643 §4.2 Group schema.
pub fn group_schema() -> Schema {
    let members = complex(
        "members",
        "A list of members of the Group.",
        vec![
            string("value", "Identifier of the member of this Group.")
                .mutability(Mutability::Immutable),
            Attribute::new("$ref", AttrType::Reference)
                .describe(
                    "The URI corresponding to a SCIM resource that is a member of this Group.",
                )
                .references(&["User", "Group"])
                .mutability(Mutability::Immutable),
            string(
                "display",
                "A human-readable name, primarily used for display purposes.",
            ),
            string(
                "type",
                "A label indicating the type of resource, e.g., 'User' or 'Group'.",
            )
            .canonical(&["User", "Group"])
            .mutability(Mutability::Immutable),
        ],
    )
    .multi();
    Schema {
        id: urn::GROUP.to_string(),
        name: "Group".to_string(),
        description: "Group".to_string(),
        attributes: vec![
            string("displayName", "A human-readable name for the Group.").required(),
            members,
        ],
    }
}

/// The RFC 7643 §4.3 Enterprise User extension.
pub fn enterprise_user_schema() -> Schema {
    let manager = complex(
        "manager",
        "The User's manager.",
        vec![
            string(
                "value",
                "The id of the SCIM resource representing the User's manager.",
            ),
            Attribute::new("$ref", AttrType::Reference)
                .describe("The URI of the SCIM resource representing the User's manager.")
                .references(&["User"]),
            string("displayName", "The displayName of the User's manager.")
                .mutability(Mutability::ReadOnly),
        ],
    );
    Schema {
        id: urn::ENTERPRISE_USER.to_string(),
        name: "EnterpriseUser".to_string(),
        description: "Enterprise User".to_string(),
        attributes: vec![
            string(
                "employeeNumber",
                "Numeric or alphanumeric identifier assigned to a person.",
            ),
            string("costCenter", "Identifies the name of a cost center."),
            string("organization", "Identifies the name of an organization."),
            string("division", "Identifies the name of a division."),
            string("department", "Identifies the name of a department."),
            manager,
        ],
    }
}

/// The common attributes of RFC 7643 §3.1 (`id`, `externalId`, `meta`), as a pseudo-schema.
pub fn common_attributes() -> &'static Schema {
    static COMMON: OnceLock<Schema> = OnceLock::new();
    COMMON.get_or_init(|| {
        let read_only = |attribute: Attribute| attribute.mutability(Mutability::ReadOnly);
        Schema {
            id: String::new(),
            name: "Common".to_string(),
            description: "Attributes common to all resources (RFC 7643 §3.1).".to_string(),
            attributes: vec![
                read_only(string("id", "A unique identifier for a SCIM resource as defined by the service provider."))
                    .case_exact()
                    .returned(Returned::Always)
                    .uniqueness(Uniqueness::Server),
                string("externalId", "A String that is an identifier for the resource as defined by the provisioning client.").case_exact(),
                read_only(complex(
                    "meta",
                    "A complex attribute containing resource metadata.",
                    vec![
                        read_only(string("resourceType", "The name of the resource type of the resource.").case_exact()),
                        read_only(Attribute::new("created", AttrType::DateTime).describe("The DateTime that the resource was added to the service provider.")),
                        read_only(Attribute::new("lastModified", AttrType::DateTime).describe("The most recent DateTime that the details of this resource were updated.")),
                        read_only(Attribute::new("location", AttrType::Reference).describe("The URI of the resource being returned.").references(&["uri"]).case_exact()),
                        read_only(string("version", "The version of the resource being returned.").case_exact()),
                    ],
                )),
                Attribute::new("schemas", AttrType::Reference)
                    .describe("The schema URNs the resource conforms to.")
                    .multi()
                    .references(&["uri"])
                    .returned(Returned::Always)
                    .required(),
            ],
        }
    })
}
