//! What the host offers plugins: logging through the host's `tracing`
//! subscriber (a `.so` cannot see it directly), and the store metrics a
//! plugin reports per store operation, counted under the route of the
//! request in progress on the calling thread ([`RouteScope`]), and the
//! change-feed subscriber gauges, attributed the same way.
//!
//! Reports made outside a request (a plugin's own delivery thread) go under
//! the route `(none)`: the host cannot tell which stage such a thread
//! belongs to, as every stage gets the same services object and the SDK's
//! free functions use the library-wide handle of the first component
//! created.

use std::sync::Arc;
use std::time::Duration;

use abi_stable::std_types::{ROption, RStr};
use scimgate_abi::ffi::{FfiHostServices, StorePool};
use scimgate_abi::LogLevel;
use tracing::level_filters::LevelFilter;

use crate::metrics::{store_metrics, PoolState, RouteStoreMetrics, SubscriberState, NO_ROUTE};

/// Forwards plugin log events to `tracing`, under the target
/// `scimgate::plugin` with the plugin's own target as a field.
#[derive(Clone)]
pub struct TracingHostServices;

impl FfiHostServices for TracingHostServices {
    fn max_level(&self) -> LogLevel {
        match LevelFilter::current() {
            LevelFilter::OFF | LevelFilter::ERROR => LogLevel::Error,
            LevelFilter::WARN => LogLevel::Warn,
            LevelFilter::INFO => LogLevel::Info,
            LevelFilter::DEBUG => LogLevel::Debug,
            _ => LogLevel::Trace,
        }
    }

    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
        let target = target.as_str();
        let message = message.as_str();
        CURRENT_REQUEST.with(|current| {
            let current = current.borrow();
            // Empty outside a request (creation, validation, background work).
            let request_id = current.as_deref().unwrap_or("");
            match level {
                LogLevel::Error => {
                    tracing::error!(target: "scimgate::plugin", plugin = target, request_id, "{message}")
                }
                LogLevel::Warn => {
                    tracing::warn!(target: "scimgate::plugin", plugin = target, request_id, "{message}")
                }
                LogLevel::Info => {
                    tracing::info!(target: "scimgate::plugin", plugin = target, request_id, "{message}")
                }
                LogLevel::Debug => {
                    tracing::debug!(target: "scimgate::plugin", plugin = target, request_id, "{message}")
                }
                LogLevel::Trace => {
                    tracing::trace!(target: "scimgate::plugin", plugin = target, request_id, "{message}")
                }
            }
        })
    }

    fn report_store_op(
        &self,
        operation: RStr<'_>,
        duration_nanos: u64,
        error_kind: RStr<'_>,
        pool: ROption<StorePool>,
    ) {
        let pool = pool.into_option().map(|p| PoolState {
            in_use: u64::from(p.in_use),
            idle: u64::from(p.idle),
            size: u64::from(p.size),
        });
        let elapsed = Duration::from_nanos(duration_nanos);
        CURRENT_ROUTE.with(|current| match &*current.borrow() {
            Some(route) => route.report(operation.as_str(), elapsed, error_kind.as_str(), pool),
            // Outside a request (a stage's creation migrating its store):
            // counted under the route `(none)`.
            None => store_metrics().route("").report(
                operation.as_str(),
                elapsed,
                error_kind.as_str(),
                pool,
            ),
        })
    }

    fn report_change_lag(&self, subscriber: RStr<'_>, lag: u64, dead_lettered: bool) {
        let state = SubscriberState { lag, dead_lettered };
        CURRENT_ROUTE.with(|current| {
            let current = current.borrow();
            let mount = current.as_ref().map_or(NO_ROUTE, |route| route.mount());
            store_metrics()
                .changes
                .report(mount, subscriber.as_str(), state)
        })
    }
}

thread_local! {
    static CURRENT_REQUEST: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// While alive, plugin log lines written on this thread carry `request_id`
/// (a plugin calls the host synchronously from the pipeline's thread).
pub struct RequestScope {
    previous: Option<String>,
}

impl RequestScope {
    pub fn enter(request_id: &str) -> RequestScope {
        let previous = CURRENT_REQUEST.with(|c| c.borrow_mut().replace(request_id.to_string()));
        RequestScope { previous }
    }
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT_REQUEST.with(|c| *c.borrow_mut() = previous);
    }
}

thread_local! {
    static CURRENT_ROUTE: std::cell::RefCell<Option<Arc<RouteStoreMetrics>>> =
        const { std::cell::RefCell::new(None) };
}

/// While alive, store operations plugins report on this thread count under
/// this route (`Route::run` enters it around the pipeline). Costs one
/// reference-count increment: the route resolved its entry when it was
/// built.
pub struct RouteScope {
    previous: Option<Arc<RouteStoreMetrics>>,
}

impl RouteScope {
    pub fn enter(store: &Arc<RouteStoreMetrics>) -> RouteScope {
        let previous = CURRENT_ROUTE.with(|c| c.borrow_mut().replace(store.clone()));
        RouteScope { previous }
    }
}

impl Drop for RouteScope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT_ROUTE.with(|c| *c.borrow_mut() = previous);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(operation: &str, error_kind: &str, pool: Option<StorePool>) {
        TracingHostServices.report_store_op(
            operation.into(),
            1_000_000,
            error_kind.into(),
            pool.into(),
        );
    }

    #[test]
    fn store_reports_count_under_the_route_in_scope_then_under_none() {
        let route = store_metrics().route("/host-services-test");
        let none = store_metrics().route("");
        let none_before = none.operation_count("members");
        {
            let _scope = RouteScope::enter(&route);
            report("get", "", None);
            report(
                "members",
                "internal",
                Some(StorePool {
                    in_use: 1,
                    idle: 0,
                    size: 2,
                }),
            );
            // A nested scope (a route inside a route, as in tests) wins,
            // and the outer one comes back when it ends.
            let other = store_metrics().route("/host-services-test-inner");
            {
                let _inner = RouteScope::enter(&other);
                report("get", "", None);
            }
            report("get", "", None);
            assert_eq!(other.operation_count("get"), 1);
        }
        assert_eq!(route.operation_count("get"), 2);
        assert_eq!(route.error_count("members", "internal"), 1);
        // Out of scope: the route `(none)`.
        report("members", "", None);
        assert_eq!(route.operation_count("members"), 1);
        assert_eq!(none.operation_count("members"), none_before + 1);
    }

    #[test]
    fn change_lag_reports_go_under_the_route_in_scope_then_under_none() {
        let route = store_metrics().route("/host-services-changes");
        {
            let _scope = RouteScope::enter(&route);
            TracingHostServices.report_change_lag("hs-test-iga".into(), 7, false);
        }
        TracingHostServices.report_change_lag("hs-test-iga".into(), 3, true);
        let changes = &store_metrics().changes;
        assert_eq!(
            changes.get("/host-services-changes", "hs-test-iga"),
            Some(SubscriberState {
                lag: 7,
                dead_lettered: false
            })
        );
        assert_eq!(
            changes.get("", "hs-test-iga"),
            Some(SubscriberState {
                lag: 3,
                dead_lettered: true
            })
        );
    }
}
