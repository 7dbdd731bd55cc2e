//! What a request path below a SCIM base URL addresses: the one resolver
//! that the policies, the profiles and the endpoint all use, so that the
//! stage that decides access and the stage that executes cannot disagree.
//!
//! The input is a canonical path (`scimgate_abi::path::canonicalize`: decoded
//! once, no trailing slash, no dot or empty segments). Fixed names
//! (`ServiceProviderConfig`, `ResourceTypes`, `Schemas`, `Bulk`, `Me`,
//! `Changes`, `.search`) and resource endpoints match ignoring ASCII case, as IGA
//! clients send `/resourcetypes/` or `/users`; ids and schema URNs keep
//! their case.

/// What a canonical path below the SCIM base addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// The base URL itself.
    Root,
    /// `/ServiceProviderConfig`.
    ServiceProviderConfig,
    /// `/ResourceTypes` or `/ResourceTypes/{name}`.
    ResourceTypes(Option<&'a str>),
    /// `/Schemas` or `/Schemas/{urn}`.
    Schemas(Option<&'a str>),
    /// `/.search` at the root: a search over every resource type.
    Search,
    /// `/Bulk`.
    Bulk,
    /// `/Me`, the authenticated caller's own resource.
    Me,
    /// `/Changes`: scimgate's change feed (an extension, not RFC 7644).
    Changes,
    /// `/Changes/Subscribers` (`None`) or `/Changes/Subscribers/{name}`:
    /// the push subscribers' status and operations (replay, skip).
    ChangeSubscribers(Option<&'a str>),
    /// `/{endpoint}`: a resource type's collection (list, create).
    Collection(&'a str),
    /// `/{endpoint}/.search`.
    CollectionSearch(&'a str),
    /// `/{endpoint}/{id}`.
    Resource(&'a str, &'a str),
    /// Anything else (`/Users/1/x`, `/Me/x`, `/Bulk/x`): nothing is there.
    Nothing(&'a str),
}

impl<'a> Target<'a> {
    /// Resolves a canonical path (`""` and `"/"` are the base itself).
    ///
    /// ```
    /// use scimgate_scim::Target;
    /// assert_eq!(Target::resolve("/users/.SEARCH"), Target::CollectionSearch("users"));
    /// assert_eq!(Target::resolve("/resourcetypes"), Target::ResourceTypes(None));
    /// assert_eq!(Target::resolve("/Groups/42"), Target::Resource("Groups", "42"));
    /// assert_eq!(Target::resolve("/Bulk").type_name(), Some("Bulk"));
    /// ```
    pub fn resolve(path: &'a str) -> Target<'a> {
        let rest = path.strip_prefix('/').unwrap_or(path);
        if rest.is_empty() {
            return Target::Root;
        }
        let mut segments = rest.splitn(3, '/');
        let first = segments.next().unwrap_or("");
        let second = segments.next();
        let third = segments.next();
        let is = |name: &str| first.eq_ignore_ascii_case(name);
        let subscribers =
            is("Changes") && second.is_some_and(|s| s.eq_ignore_ascii_case("Subscribers"));
        match (second, third) {
            (_, None) if subscribers => Target::ChangeSubscribers(None),
            (_, Some(name)) if subscribers && !name.is_empty() && !name.contains('/') => {
                Target::ChangeSubscribers(Some(name))
            }
            (_, Some(_)) => Target::Nothing(first),
            (None, None) if is("ServiceProviderConfig") => Target::ServiceProviderConfig,
            (Some(_), None) if is("ServiceProviderConfig") => Target::Nothing(first),
            (name, None) if is("ResourceTypes") => Target::ResourceTypes(name),
            (urn, None) if is("Schemas") => Target::Schemas(urn),
            (None, None) if is(".search") => Target::Search,
            (None, None) if is("Bulk") => Target::Bulk,
            (None, None) if is("Me") => Target::Me,
            (None, None) if is("Changes") => Target::Changes,
            (Some(_), None) if is(".search") || is("Bulk") || is("Me") || is("Changes") => {
                Target::Nothing(first)
            }
            (None, None) => Target::Collection(first),
            (Some(id), None) if id.eq_ignore_ascii_case(".search") => {
                Target::CollectionSearch(first)
            }
            (Some(id), None) => Target::Resource(first, id),
        }
    }

    /// The name policies key their per-type rules on: the resource
    /// endpoint as sent (`Users`, `groups`), or the fixed name (`Bulk`,
    /// `Me`, `Changes`, `Schemas`, `ResourceTypes`, `ServiceProviderConfig`,
    /// `.search`); compare it ignoring ASCII case. `None` for the base.
    pub fn type_name(&self) -> Option<&'a str> {
        match *self {
            Target::Root => None,
            Target::ServiceProviderConfig => Some("ServiceProviderConfig"),
            Target::ResourceTypes(_) => Some("ResourceTypes"),
            Target::Schemas(_) => Some("Schemas"),
            Target::Search => Some(".search"),
            Target::Bulk => Some("Bulk"),
            Target::Me => Some("Me"),
            Target::Changes | Target::ChangeSubscribers(_) => Some("Changes"),
            Target::Collection(e)
            | Target::CollectionSearch(e)
            | Target::Resource(e, _)
            | Target::Nothing(e) => Some(e),
        }
    }

    /// The resource endpoint for resource targets (`Users` of `/Users/1`).
    pub fn endpoint(&self) -> Option<&'a str> {
        match *self {
            Target::Collection(e) | Target::CollectionSearch(e) | Target::Resource(e, _) => Some(e),
            _ => None,
        }
    }

    /// A search: `POST /.search` or `POST /{endpoint}/.search`.
    pub fn is_search(&self) -> bool {
        matches!(self, Target::Search | Target::CollectionSearch(_))
    }

    /// Whether `method` on this target only reads (RFC 7644 §3.4.3: a
    /// `POST` to a `.search` endpoint is a query).
    pub fn is_read(&self, method: &str) -> bool {
        match method {
            "GET" | "HEAD" => true,
            "POST" => self.is_search(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_every_kind_of_path() {
        let cases = [
            ("", Target::Root),
            ("/", Target::Root),
            ("/ServiceProviderConfig", Target::ServiceProviderConfig),
            ("/serviceproviderconfig", Target::ServiceProviderConfig),
            ("/ResourceTypes", Target::ResourceTypes(None)),
            ("/resourcetypes/User", Target::ResourceTypes(Some("User"))),
            ("/Schemas", Target::Schemas(None)),
            (
                "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
                Target::Schemas(Some("urn:ietf:params:scim:schemas:core:2.0:User")),
            ),
            ("/.search", Target::Search),
            ("/.SEARCH", Target::Search),
            ("/Bulk", Target::Bulk),
            ("/bulk", Target::Bulk),
            ("/Me", Target::Me),
            ("/Changes", Target::Changes),
            ("/changes", Target::Changes),
            ("/Changes/1", Target::Nothing("Changes")),
            ("/Changes/Subscribers", Target::ChangeSubscribers(None)),
            (
                "/changes/subscribers/hr",
                Target::ChangeSubscribers(Some("hr")),
            ),
            ("/Changes/Subscribers/hr/x", Target::Nothing("Changes")),
            ("/Users", Target::Collection("Users")),
            ("/groups", Target::Collection("groups")),
            ("/Users/.search", Target::CollectionSearch("Users")),
            ("/Users/abc", Target::Resource("Users", "abc")),
            ("/Users/a&b", Target::Resource("Users", "a&b")),
            ("/Groups&x", Target::Collection("Groups&x")),
            ("/Users/1/x", Target::Nothing("Users")),
            ("/Me/x", Target::Nothing("Me")),
            ("/Bulk/x", Target::Nothing("Bulk")),
            ("/.search/x", Target::Nothing(".search")),
            (
                "/ServiceProviderConfig/x",
                Target::Nothing("ServiceProviderConfig"),
            ),
            ("/Schemas/a/b", Target::Nothing("Schemas")),
        ];
        for (path, want) in cases {
            assert_eq!(Target::resolve(path), want, "{path}");
        }
    }

    #[test]
    fn reads_are_get_head_and_search_posts() {
        let t = Target::resolve;
        assert!(t("/Users/1").is_read("GET"));
        assert!(t("/Users").is_read("HEAD"));
        assert!(t("/.search").is_read("POST"));
        assert!(t("/Users/.search").is_read("POST"));
        assert!(!t("/Users").is_read("POST"));
        assert!(!t("/Users/.searchx").is_read("POST"));
        assert!(!t("/.search").is_read("PUT"));
        assert!(!t("/Bulk").is_read("POST"));
        assert!(!t("/Users/1/.search").is_read("POST"));
    }

    #[test]
    fn type_names() {
        assert_eq!(Target::resolve("/users/1").type_name(), Some("users"));
        assert_eq!(Target::resolve("/bulk").type_name(), Some("Bulk"));
        assert_eq!(Target::resolve("/me").type_name(), Some("Me"));
        assert_eq!(Target::resolve("/changes").type_name(), Some("Changes"));
        assert!(Target::resolve("/Changes").is_read("GET"));
        assert!(!Target::resolve("/Changes").is_read("POST"));
        assert_eq!(Target::resolve("/").type_name(), None);
        assert_eq!(Target::resolve("/Users/1/x").endpoint(), None);
        assert_eq!(Target::resolve("/Users/1").endpoint(), Some("Users"));
    }
}
