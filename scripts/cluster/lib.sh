# The real cluster's steps, sourced by scripts/cluster.sh. Each function does one step and says
# what failed; the layout (addresses, names) is defined once at the top.
# shellcheck shell=bash
# here (scripts/) and root (the checkout) are set by scripts/cluster.sh, which sources this file.
# shellcheck disable=SC2154

# The Kubernetes release `up` builds and starts; `--k8s` picks another with a wrapper module in
# modules/ (gen-k8s-module.sh makes one).
# shellcheck disable=SC2034
DEFAULT_K8S_VERSION=v1.37.2

cache=${DVT_CACHE:-$root/.cache}
dir=${DVT_CLUSTER_DIR:-/var/lib/dvt-cluster}
pki=$dir/pki

# Network layout: every address lives in a namespace these scripts create (none in the root
# namespace, none routed out). The nodes' network is 10.250.0.0/24 on a bridge in dvt-net; the
# control plane is 10.250.0.2; node I is 10.250.0.(10+I) with pods in 10.244.I.0/24.
NET_NS=dvt-net
CP_NS=dvt-cp
CP_IP=10.250.0.2
NODE_NET_PREFIX=10.250.0
POD_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
DNS_SERVICE_IP=10.96.0.10
ZONES=(zone-a zone-b zone-c zone-d)

node_name() { echo "kn-$1"; }
node_ns() { echo "dvt-n$1"; }
node_ip() { echo "$NODE_NET_PREFIX.$((10 + $1))"; }
node_pod_subnet() { echo "10.244.$1.0/24"; }
node_zone() { echo "${ZONES[$((($1 - 1) % ${#ZONES[@]}))]}"; }
node_dir() { echo "$dir/nodes/$(node_name "$1")"; }
node_index() { # NODE name -> index
  local name=$1; [[ $name =~ ^kn-([0-9]+)$ ]] || { echo "not a node of this cluster: $name" >&2; return 1; }
  echo "${BASH_REMATCH[1]}"
}

log() { echo "cluster: $*" >&2; }
die() { echo "cluster: error: $*" >&2; exit 1; }
in_ns() { local ns=$1; shift; nsenter --net="/var/run/netns/$ns" "$@"; }
kubectl_admin() { kubectl --kubeconfig "$dir/admin.kubeconfig" "$@"; }

# ---- processes: one pid file per component, started in their own session --------------------

start_bg() { # NAME NS COMMAND...: runs COMMAND in network namespace NS, logs to logs/NAME.log
  local name=$1 ns=$2; shift 2
  mkdir -p "$dir/pids" "$dir/logs"
  setsid nsenter --net="/var/run/netns/$ns" "$@" > "$dir/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$dir/pids/$name.pid"
}

start_host() { # NAME COMMAND...: runs COMMAND in the root namespace (it reaches only loopback)
  local name=$1; shift
  mkdir -p "$dir/pids" "$dir/logs"
  setsid "$@" > "$dir/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$dir/pids/$name.pid"
}

stop_procs() { # TIMEOUT_S NAME...: SIGTERM to all at once, then SIGKILL to those left after the
  # timeout (an apiserver whose etcd is gone ignored SIGTERM for over 30 s)
  local timeout=$1 name pid pids=()
  shift
  for name in "$@"; do
    [ -f "$dir/pids/$name.pid" ] || continue
    pid=$(cat "$dir/pids/$name.pid")
    kill "$pid" 2>/dev/null && pids+=("$pid")
    rm -f "$dir/pids/$name.pid"
  done
  for _ in $(seq $((timeout * 10))); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
}

stop_proc() { stop_procs "${2:-10}" "$1"; } # NAME [TIMEOUT_S]

running() { local pid_file="$dir/pids/$1.pid"; [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }

wait_for() { # DESCRIPTION SECONDS COMMAND...: polls COMMAND each second
  local what=$1 seconds=$2; shift 2
  for _ in $(seq "$seconds"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  die "$what not ready after ${seconds}s (logs in $dir/logs)"
}

# ---- prerequisites ---------------------------------------------------------------------------

install_packages() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v socat >/dev/null || missing+=(socat)
  command -v openssl >/dev/null || missing+=(openssl)
  [ -x /bin/busybox ] || missing+=(busybox-static)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 \
      || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2; }
  fi
  [ "$(id -u)" = 0 ] || die "needs root (network namespaces, mounts)"
}

# ---- network ---------------------------------------------------------------------------------

join_bridge() { # NS ADDRESS: a veth from NS to the bridge in dvt-net
  local ns=$1 address=$2
  ip link add "v-$ns" type veth peer name eth0 netns "$ns"
  ip link set "v-$ns" netns "$NET_NS"
  ip -n "$NET_NS" link set "v-$ns" master br0 up
  ip -n "$ns" addr add "$address/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
}

network_up() { # NODES
  local nodes=$1 i j
  ip netns add "$NET_NS"
  ip -n "$NET_NS" link set lo up
  ip -n "$NET_NS" link add br0 type bridge
  ip -n "$NET_NS" link set br0 up
  ip netns add "$CP_NS"
  join_bridge "$CP_NS" "$CP_IP"
  for i in $(seq "$nodes"); do
    ip netns add "$(node_ns "$i")"
    join_bridge "$(node_ns "$i")" "$(node_ip "$i")"
    in_ns "$(node_ns "$i")" sysctl -qw net.ipv4.ip_forward=1
    # Pod-to-Service traffic answered by a pod on the same bridge must pass kube-proxy's rules.
    in_ns "$(node_ns "$i")" sysctl -qw net.bridge.bridge-nf-call-iptables=1
    ip -n "$CP_NS" route add "$(node_pod_subnet "$i")" via "$(node_ip "$i")"
    for j in $(seq "$nodes"); do
      [ "$i" = "$j" ] || ip -n "$(node_ns "$i")" route add "$(node_pod_subnet "$j")" via "$(node_ip "$j")"
    done
  done
}

# ---- certificates (one CA, openssl) ----------------------------------------------------------

cert() { # FILE CN ORG SAN: a client/server certificate signed by the cluster CA
  local file=$1 cn=$2 org=$3 san=$4 subject="/CN=$2"
  [ -n "$cn" ] || die "certificate $file without a name"
  if [ -n "$org" ]; then subject="$subject/O=$org"; fi
  openssl req -newkey rsa:2048 -nodes -keyout "$pki/$file.key" -out "$pki/$file.csr" -subj "$subject" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" > "$pki/$file.ext"
  openssl x509 -req -in "$pki/$file.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -out "$pki/$file.crt" -days 30 -extfile "$pki/$file.ext" 2>/dev/null
  rm -f "$pki/$file.csr" "$pki/$file.ext"
}

kubeconfig() { # FILE SERVER CERT
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: dvt, cluster: {server: "$2", certificate-authority: "$pki/ca.crt"}}]
users: [{name: $3, user: {client-certificate: "$pki/$3.crt", client-key: "$pki/$3.key"}}]
contexts: [{name: dvt, context: {cluster: dvt, user: $3}}]
current-context: dvt
EOF
}

pki_up() { # NODES
  local nodes=$1 i
  mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 30 -subj "/CN=dvt-cluster-ca" 2>/dev/null
  cert apiserver kube-apiserver "" "IP:127.0.0.1,IP:$CP_IP,IP:$API_SERVICE_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert admin admin system:masters "DNS:admin"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters "DNS:kube-apiserver-kubelet-client"
  cert controller-manager system:kube-controller-manager "" "DNS:kube-controller-manager"
  cert scheduler system:kube-scheduler "" "DNS:kube-scheduler"
  cert kube-proxy system:kube-proxy "" "DNS:kube-proxy"
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  kubeconfig "$dir/admin.kubeconfig" https://127.0.0.1:6443 admin
  kubeconfig "$dir/admin-cp.kubeconfig" "https://$CP_IP:6443" admin
  kubeconfig "$dir/controller-manager.kubeconfig" "https://$CP_IP:6443" controller-manager
  kubeconfig "$dir/scheduler.kubeconfig" "https://$CP_IP:6443" scheduler
  kubeconfig "$dir/kube-proxy.kubeconfig" "https://$CP_IP:6443" kube-proxy
  for i in $(seq "$nodes"); do
    cert "$(node_name "$i")" "system:node:$(node_name "$i")" system:nodes "IP:$(node_ip "$i"),DNS:$(node_name "$i")"
  done
}

# ---- control plane ---------------------------------------------------------------------------

control_plane_up() { # BIN
  local bin=$1
  mkdir -p "$dir/etcd"
  start_bg etcd "$CP_NS" "$bin/etcd" --data-dir "$dir/etcd" --unsafe-no-fsync \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381
  wait_for etcd 30 in_ns "$CP_NS" bash -c 'exec 3<>/dev/tcp/127.0.0.1/2379'
  # The admission plugins a kubeadm cluster enables: the defaults plus NodeRestriction. Pods
  # tolerate an unreachable node for 30 s instead of 300 s, so that a test sees the taint
  # manager evict the pods of a node whose kubelet stopped within a minute.
  start_bg kube-apiserver "$CP_NS" "$bin/kube-apiserver" \
    --etcd-servers=http://127.0.0.1:2379 --bind-address=0.0.0.0 --secure-port=6443 \
    --advertise-address="$CP_IP" --service-cluster-ip-range="$SERVICE_CIDR" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$pki/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --allow-privileged=true --profiling=false \
    --default-not-ready-toleration-seconds=30 --default-unreachable-toleration-seconds=30
  # The root namespace reaches the apiserver only through loopback: each connection to
  # 127.0.0.1:6443 is relayed into the control plane's namespace.
  setsid socat TCP-LISTEN:6443,bind=127.0.0.1,fork,reuseaddr \
    EXEC:"nsenter --net=/var/run/netns/$CP_NS socat STDIO TCP\:127.0.0.1\:6443" \
    > "$dir/logs/apiserver-forwarder.log" 2>&1 < /dev/null &
  echo $! > "$dir/pids/apiserver-forwarder.pid"
  wait_for kube-apiserver 90 kubectl_admin get --raw /readyz
  start_bg kube-controller-manager "$CP_NS" "$bin/kube-controller-manager" \
    --kubeconfig="$dir/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$dir/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$dir/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --controllers='*,bootstrapsigner,tokencleaner' \
    --use-service-account-credentials=true --service-account-private-key-file="$pki/sa.key" \
    --root-ca-file="$pki/ca.crt" --cluster-signing-cert-file="$pki/ca.crt" \
    --cluster-signing-key-file="$pki/ca.key" --cluster-cidr="$POD_CIDR" \
    --service-cluster-ip-range="$SERVICE_CIDR" --node-monitor-grace-period=20s
  start_bg kube-scheduler "$CP_NS" "$bin/kube-scheduler" \
    --kubeconfig="$dir/scheduler.kubeconfig" \
    --authentication-kubeconfig="$dir/scheduler.kubeconfig" \
    --authorization-kubeconfig="$dir/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false
}

# ---- nodes -----------------------------------------------------------------------------------

node_configs() { # I: containerd, CNI, kubelet and kube-proxy configuration of node I
  local i=$1 nd name
  nd=$(node_dir "$i"); name=$(node_name "$i")
  mkdir -p "$nd/cni" "$nd/kubelet" "$nd/pod-logs" "$nd/local-path"
  kubeconfig "$nd/kubeconfig" "https://$CP_IP:6443" "$name"
  # One containerd per kubelet (a kubelet removes the sandboxes it does not know).
  # restrict_oom_score_adj: this machine lacks CAP_SYS_RESOURCE (REAL-CLUSTER.md).
  cat > "$nd/containerd.toml" <<EOF
version = 2
root = "$nd/containerd/root"
state = "$nd/containerd/state"
[grpc]
  address = "$nd/containerd.sock"
[ttrpc]
  address = "$nd/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$nd/cni"
EOF
  # The pod network: a bridge per node, one subnet per node, routes between nodes; no
  # masquerade (nothing leaves this machine's namespaces).
  cat > "$nd/cni/10-bridge.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "dvt", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$nd/ipam", "ranges": [[{"subnet": "$(node_pod_subnet "$i")"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
  # Pods resolve only cluster names: the host's resolver is outside this machine's network.
  : > "$nd/resolv.conf"
  cat > "$nd/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}, x509: {clientCAFile: "$pki/ca.crt"}}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
containerRuntimeEndpoint: unix://$nd/containerd.sock
tlsCertFile: $pki/$name.crt
tlsPrivateKeyFile: $pki/$name.key
readOnlyPort: 0
clusterDNS: [$DNS_SERVICE_IP]
clusterDomain: cluster.local
resolvConf: $nd/resolv.conf
podLogsDir: $nd/pod-logs
healthzBindAddress: 127.0.0.1
serializeImagePulls: false
# Eviction by absolute free space, not the defaults' share of the disk (nodefs 10 %, imagefs
# 15 %): the nodes share this machine's disk with the builds, and on 2026-12-07 a 252 GiB disk
# with 39 GiB free (15.4 %) tainted every node node.kubernetes.io/disk-pressure, so that nothing
# scheduled. Every threshold is named: a partial evictionHard sets the others to 0 unless
# mergeDefaultEvictionSettings (k8s.io/kubelet v0.37.2, config/v1beta1/types.go, evictionHard and
# imageGC* fields read there; the v1.34.4 kubelet accepts the same).
evictionHard: {memory.available: "100Mi", nodefs.available: "2Gi", nodefs.inodesFree: "5%", imagefs.available: "2Gi", imagefs.inodesFree: "5%"}
# No image garbage collection: every image here was loaded from a local file (no registry can
# give one back), and at the default 85 % of the shared disk the kubelet removed the pause image
# of kn-8 mid-test (2026-12-07), after which no pod could start there ("failed to pull
# registry.k8s.io/pause:3.10").
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
  cat > "$nd/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$dir/kube-proxy.kubeconfig"}
hostnameOverride: $name
mode: iptables
clusterCIDR: $POD_CIDR
conntrack: {maxPerCore: 0}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
EOF
}

containerd_up() { # I
  local i=$1 nd
  nd=$(node_dir "$i")
  start_bg "containerd-$(node_name "$i")" "$(node_ns "$i")" containerd --config "$nd/containerd.toml"
  wait_for "containerd of $(node_name "$i")" 30 ctr --address "$nd/containerd.sock" version
}

kubelet_up() { # I BIN
  local i=$1 bin=$2 nd name
  nd=$(node_dir "$i"); name=$(node_name "$i")
  start_bg "kubelet-$name" "$(node_ns "$i")" "$bin/kubelet" --config="$nd/kubelet.yaml" \
    --kubeconfig="$nd/kubeconfig" --hostname-override="$name" --root-dir="$nd/kubelet" \
    --node-ip="$(node_ip "$i")" --node-labels="topology.kubernetes.io/zone=$(node_zone "$i")"
}

kube_proxy_up() { # I BIN
  local i=$1 bin=$2
  start_bg "kube-proxy-$(node_name "$i")" "$(node_ns "$i")" "$bin/kube-proxy" --config="$(node_dir "$i")/kube-proxy.yaml"
}

import_images() { # I: every image tarball in the cache into node I's containerd
  local i=$1 image
  for image in "$cache"/images/*.tar; do
    [ -e "$image" ] || die "no images in $cache/images (scripts/cluster.sh load builds them)"
    ctr --address "$(node_dir "$i")/containerd.sock" -n k8s.io images import --no-unpack=false "$image" >/dev/null \
      || die "importing $image into $(node_name "$i")"
  done
}

nodes_count() { cat "$dir/nodes-count"; }
k8s_version() { cat "$dir/k8s-version"; }

kubelet_stop() { # NODE
  local i; i=$(node_index "$1")
  running "kubelet-$1" || die "the kubelet of $1 is not running"
  stop_proc "kubelet-$1"
  log "kubelet of $1 stopped (its containers keep running, as on a partitioned node)"
}

kubelet_start() { # NODE
  local i bin; i=$(node_index "$1")
  running "kubelet-$1" && die "the kubelet of $1 already runs"
  bin=$("$here/cluster/build.sh" kubernetes "$(k8s_version)")
  kubelet_up "$i" "$bin"
  log "kubelet of $1 started"
}

node_poweroff() { # NODE: as if its power were cut: every container killed, the kubelet stopped
  local i nd ids count=0
  i=$(node_index "$1"); nd=$(node_dir "$i")
  if running "kubelet-$1"; then stop_proc "kubelet-$1"; fi
  ids=$(ctr --address "$nd/containerd.sock" -n k8s.io tasks ls -q 2>/dev/null || true)
  for id in $ids; do
    ctr --address "$nd/containerd.sock" -n k8s.io tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
    count=$((count + 1))
  done
  log "$1 powered off: kubelet stopped, $count containers killed (containerd keeps their state, as a disk would)"
}

node_poweron() { # NODE: its kubelet starts and finds its containers dead, as after a reboot
  kubelet_start "$1"
}

container_kill() { # NODE CONTAINER_ID: SIGKILL to every process of one container, as `kill -9`
  # or the kernel's OOM killer would: no SIGTERM, no chance to clean up. The ID is the one a
  # pod's status names (containerStatuses[].containerID without "containerd://").
  local i nd; i=$(node_index "$1"); nd=$(node_dir "$i")
  ctr --address "$nd/containerd.sock" -n k8s.io tasks kill -a -s SIGKILL "$2" >/dev/null
  log "container ${2:0:12} on $1 killed with SIGKILL"
}

# ---- add-ons ---------------------------------------------------------------------------------

addons_up() { # NODES
  local nodes=$1 i paths=""
  for i in $(seq "$nodes"); do
    paths="$paths${paths:+,}{\"node\": \"$(node_name "$i")\", \"paths\": [\"$(node_dir "$i")/local-path\"]}"
  done
  sed -e "s|@DNS_SERVICE_IP@|$DNS_SERVICE_IP|" "$here/cluster/addons/coredns.yaml" | kubectl_admin apply -f - >/dev/null
  sed -e "s|@NODE_PATHS@|$paths|" "$here/cluster/addons/local-path.yaml" | kubectl_admin apply -f - >/dev/null
  start_host resizer python3 "$here/cluster/resizer.py" "$dir/admin.kubeconfig"
  kubectl_admin -n kube-system rollout status deployment/coredns --timeout=180s >&2 \
    || die "CoreDNS not ready (kubectl -n kube-system describe pods)"
  kubectl_admin -n local-path-storage rollout status deployment/local-path-provisioner --timeout=180s >&2 \
    || die "local-path provisioner not ready"
}

# ---- images ----------------------------------------------------------------------------------

cluster_load() {
  [ -f "$dir/nodes-count" ] || die "no cluster runs (scripts/cluster.sh up)"
  "$here/cluster/images.sh" "$(k8s_version)" >&2
  local i
  for i in $(seq "$(nodes_count)"); do import_images "$i"; done
  log "images imported into $(nodes_count) nodes"
}

# ---- up, down, status ------------------------------------------------------------------------

cluster_up() { # VERSION NODES
  local version=$1 nodes=$2 bin i start=$SECONDS
  [ -e "/var/run/netns/$CP_NS" ] && die "a cluster already runs (scripts/cluster.sh down first)"
  [ "$nodes" -ge 1 ] && [ "$nodes" -le 50 ] || die "--nodes must be 1..50"
  install_packages
  bin=$("$here/cluster/build.sh" kubernetes "$version")
  "$here/cluster/images.sh" "$version" >&2
  mkdir -p "$dir/logs" "$dir/pids"
  echo "$version" > "$dir/k8s-version"; echo "$nodes" > "$dir/nodes-count"
  log "starting Kubernetes $version with $nodes nodes in $dir"
  network_up "$nodes"
  pki_up "$nodes"
  control_plane_up "$bin"
  for i in $(seq "$nodes"); do
    node_configs "$i"
    containerd_up "$i"
    import_images "$i"
    kubelet_up "$i" "$bin"
    kube_proxy_up "$i" "$bin"
  done
  wait_for "$nodes Ready nodes" 180 bash -c \
    "[ \$(kubectl --kubeconfig '$dir/admin.kubeconfig' get nodes --no-headers 2>/dev/null | awk '\$2==\"Ready\"' | wc -l) = $nodes ]"
  addons_up "$nodes"
  log "up in $((SECONDS - start)) s"
  echo "$dir/admin.kubeconfig"
}

cluster_down() {
  local nodes=0 i names=()
  [ -f "$dir/nodes-count" ] && nodes=$(nodes_count)
  for i in $(seq "$nodes"); do names+=("kubelet-$(node_name "$i")" "kube-proxy-$(node_name "$i")"); done
  stop_procs 10 "${names[@]}"
  # Containers: every shim of a node's containerd, and what runs under it.
  local shim child
  for shim in $(pgrep -f "containerd-shim.*-address $dir/" || true); do
    for child in $(pgrep -P "$shim" || true); do kill -9 "$child" 2>/dev/null || true; done
    kill -9 "$shim" 2>/dev/null || true
  done
  names=()
  for i in $(seq "$nodes"); do names+=("containerd-$(node_name "$i")"); done
  stop_procs 10 "${names[@]}" resizer kube-scheduler kube-controller-manager
  stop_procs 15 kube-apiserver
  stop_procs 10 etcd apiserver-forwarder
  # Whatever still runs inside our namespaces (a process a step above missed).
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^($NET_NS|$CP_NS|dvt-n[0-9]+)$" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  done
  # Pod network namespaces the CNI did not tear down (their containers were killed).
  for ns in $(ip netns list 2>/dev/null | awk '/^cni-/{print $1}'); do ip netns delete "$ns"; done
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^(dvt-n[0-9]+)$" || true); do ip netns delete "$ns"; done
  ip netns delete "$CP_NS" 2>/dev/null || true
  ip netns delete "$NET_NS" 2>/dev/null || true
  # Secret tmpfs, shm and overlay mounts under the state directory, deepest first.
  awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  local left
  left=$(leftovers)
  [ -z "$left" ] || die "down left behind: $left"
  rm -rf "$dir"
  log "down: no process, mount or namespace left"
}

leftovers() { # what of the cluster still exists: processes, network namespaces, mounts
  local found=()
  pgrep -f "$dir/" >/dev/null && found+=("processes: $(pgrep -af "$dir/" | head -3 | tr '\n' ';')")
  ip netns list 2>/dev/null | grep -qE "^($NET_NS|$CP_NS|dvt-n[0-9]+|cni-)" && found+=("network namespaces: $(ip netns list | tr '\n' ' ')")
  awk -v d="$dir/" 'index($2, d) == 1' /proc/mounts | grep -q . && found+=("mounts under $dir")
  echo "${found[*]:-}"
}

cluster_status() {
  [ -f "$dir/nodes-count" ] || { echo "no cluster"; return 0; }
  local f
  for f in "$dir"/pids/*.pid; do
    [ -e "$f" ] || continue
    f=$(basename "$f" .pid)
    if running "$f"; then echo "$f running"; else echo "$f stopped"; fi
  done
  kubectl_admin get nodes -L topology.kubernetes.io/zone
}
