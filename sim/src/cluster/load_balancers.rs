//! The cloud provider's service controller: every Service of type LoadBalancer gets an address
//! (from 198.51.100.0/24, TEST-NET-2), written to `status.loadBalancer.ingress` as a cloud's
//! controller would, once.

use super::*;

/// The service controller's name in the timeline.
const SERVICE_CONTROLLER: &str = "service-controller";

impl Inner {
    pub(super) fn load_balancers(&self) {
        let services: Vec<Arc<k8s_openapi::api::core::v1::Service>> =
            self.access.list(&self.types.services);
        for service in services {
            let is_load_balancer =
                service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
            let has_address = service
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .is_some_and(|ingress| !ingress.is_empty());
            if !is_load_balancer || has_address {
                continue;
            }
            let n = {
                let mut next = lock(&self.next_ip);
                *next += 1;
                *next
            };
            let mut updated = Arc::unwrap_or_clone(service.clone());
            updated.status = Some(k8s_openapi::api::core::v1::ServiceStatus {
                load_balancer: Some(k8s_openapi::api::core::v1::LoadBalancerStatus {
                    ingress: Some(vec![k8s_openapi::api::core::v1::LoadBalancerIngress {
                        ip: Some(format!("198.51.100.{}", n % 254 + 1)),
                        ip_mode: Some("VIP".to_owned()),
                        ..Default::default()
                    }]),
                }),
                conditions: None,
            });
            let _ = self.access.replace(
                &self.types.services,
                &namespace_of(&service.metadata),
                &name_of(&service.metadata),
                &updated,
                Subresource::Status,
                SERVICE_CONTROLLER,
            );
        }
    }
}
