package k8s_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/jetfold/jetfold/api"
	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/config/diag"
	"github.com/jetfold/jetfold/operators/builtin"
	"github.com/jetfold/jetfold/pipeline"
)

// The renderings under test: the kustomize base and the production overlay.
var renderings = []struct {
	name, dir  string
	production bool
}{
	{name: "base", dir: "base"},
	{name: "production", dir: "overlays/production", production: true},
}

// Names the manifests and the checks share.
const (
	processorContainer = "processor"
	backupContainer    = "backup"
	httpPortName       = "http"
	// natsSecret is the Secret the production overlay reads and does not ship.
	natsSecret = "jetfold-nats"
)

// objects are the decoded objects of one rendering.
type objects struct {
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	configMaps      []*corev1.ConfigMap
	pdbs            []*policyv1.PodDisruptionBudget
	pvcs            []*corev1.PersistentVolumeClaim
	cronJobs        []*batchv1.CronJob
	serviceMonitors []*monitoringv1.ServiceMonitor
	rules           []*monitoringv1.PrometheusRule
}

// decodeObject decodes the JSON of one rendered object into its Kubernetes type, chosen by
// apiVersion and kind, strictly: an unknown or duplicate field, a field in the wrong case,
// and a kind the manifests are not expected to hold (a Secret among them) are errors.
func (o *objects) decodeObject(apiVersion, kind string, data []byte) error {
	var into any
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		into = add(&o.deployments)
	case "v1 Service":
		into = add(&o.services)
	case "v1 ConfigMap":
		into = add(&o.configMaps)
	case "policy/v1 PodDisruptionBudget":
		into = add(&o.pdbs)
	case "v1 PersistentVolumeClaim":
		into = add(&o.pvcs)
	case "batch/v1 CronJob":
		into = add(&o.cronJobs)
	case "monitoring.coreos.com/v1 ServiceMonitor":
		into = add(&o.serviceMonitors)
	case "monitoring.coreos.com/v1 PrometheusRule":
		into = add(&o.rules)
	default:
		return fmt.Errorf("%s %s: not a kind these manifests hold (a Secret must not be shipped: reference one by name)", apiVersion, kind)
	}
	return decodeStrict(data, into)
}

// add appends a new, zero T to list and returns it, for decoding into.
func add[T any](list *[]*T) *T {
	v := new(T)
	*list = append(*list, v)
	return v
}

// decodeStrict decodes data into v as the API server's strict field validation does.
func decodeStrict(data []byte, v any) error {
	strict, err := sigsjson.UnmarshalStrict(data, v)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// render runs kustomize on dir, over the files on disk, and decodes every object.
func render(t *testing.T, dir string) *objects {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	o := &objects{}
	for _, r := range m.Resources() {
		data, err := r.MarshalJSON()
		if err != nil {
			t.Fatalf("%s %s: %v", r.GetKind(), r.GetName(), err)
		}
		if err := o.decodeObject(r.GetApiVersion(), r.GetKind(), data); err != nil {
			t.Errorf("%s %s: %v", r.GetKind(), r.GetName(), err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return o
}

func TestManifests(t *testing.T) {
	for _, rc := range renderings {
		t.Run(rc.name, func(t *testing.T) {
			o := render(t, rc.dir)
			if len(o.deployments) != 1 || len(o.cronJobs) != 1 {
				t.Fatalf("want 1 Deployment and 1 CronJob, got %d and %d", len(o.deployments), len(o.cronJobs))
			}
			t.Run("security", func(t *testing.T) { checkSecurity(t, o) })
			t.Run("config", func(t *testing.T) { checkConfig(t, o) })
			t.Run("probes", func(t *testing.T) { checkProbes(t, o) })
			t.Run("service", func(t *testing.T) { checkService(t, o) })
			t.Run("backup", func(t *testing.T) { checkBackup(t, o) })
			t.Run("metrics", func(t *testing.T) { checkMetrics(t, o) })
			t.Run("disruptions", func(t *testing.T) { checkDisruptions(t, o, rc.production) })
			if rc.production {
				t.Run("production", func(t *testing.T) { checkProduction(t, o) })
			}
		})
	}
}

// pod is a pod template of the rendering and its main container.
type pod struct {
	where     string
	template  *corev1.PodTemplateSpec
	container *corev1.Container
	// replicated is true for the Deployment's pods: processes that run at once.
	replicated bool
}

// pods returns the Deployment's pods (processor container) and the CronJob's (backup).
func (o *objects) pods(t *testing.T) []pod {
	t.Helper()
	var out []pod
	add := func(where string, tpl *corev1.PodTemplateSpec, container string, replicated bool) {
		i := slices.IndexFunc(tpl.Spec.Containers, func(c corev1.Container) bool { return c.Name == container })
		if i < 0 {
			t.Fatalf("%s: no container %q", where, container)
		}
		out = append(out, pod{where: where, template: tpl, container: &tpl.Spec.Containers[i], replicated: replicated})
	}
	for _, d := range o.deployments {
		add("Deployment "+d.Name, &d.Spec.Template, processorContainer, true)
	}
	for _, c := range o.cronJobs {
		add("CronJob "+c.Name, &c.Spec.JobTemplate.Spec.Template, backupContainer, false)
	}
	return out
}

// checkSecurity checks what the restricted Pod Security Standard asks, and more: no root,
// no privilege escalation, no capability, the runtime's seccomp profile, a read-only root
// file system, no service account token, and pinned images.
func checkSecurity(t *testing.T, o *objects) {
	for _, p := range o.pods(t) {
		spec := &p.template.Spec
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
			t.Errorf("%s: pod securityContext.runAsNonRoot is not true", p.where)
		}
		if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 {
			t.Errorf("%s: pod securityContext.runAsUser is 0", p.where)
		}
		if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod securityContext.seccompProfile is not RuntimeDefault", p.where)
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken is not false (the processor does not call the Kubernetes API)", p.where)
		}
		for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
			where := p.where + " container " + c.Name
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("%s: no securityContext", where)
				continue
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: allowPrivilegeEscalation is not false", where)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s: readOnlyRootFilesystem is not true", where)
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s: privileged", where)
			}
			if sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot || sc.RunAsUser != nil && *sc.RunAsUser == 0 {
				t.Errorf("%s: runs as root", where)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				t.Errorf("%s: capabilities do not drop ALL", where)
			} else if len(sc.Capabilities.Add) > 0 {
				t.Errorf("%s: adds capabilities %v", where, sc.Capabilities.Add)
			}
			if sc.SeccompProfile != nil && sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: seccompProfile %s", where, sc.SeccompProfile.Type)
			}
			if ref := c.Image; !strings.Contains(ref, "@sha256:") {
				i := strings.LastIndex(ref, ":")
				if i < 0 || strings.Contains(ref[i:], "/") || ref[i+1:] == "latest" {
					t.Errorf("%s: image %q: want a tag other than latest, or a digest", where, ref)
				}
			}
		}
	}
}

// checkConfig loads the pipelines file each pod reads (-c), from its ConfigMap, with the
// environment the pod gives the process, and compiles it with the code of `processor
// validate`. The process must reach an external NATS (an embedded server would keep its
// store in the container's file system).
func checkConfig(t *testing.T, o *objects) {
	for _, p := range o.pods(t) {
		cfg := loadConfig(t, o, p)
		if cfg == nil {
			continue
		}
		if cfg.NATS.URL == "" {
			t.Errorf("%s: nats.url is empty: the processor would start an embedded NATS server in the pod", p.where)
		}
		// Leases tell processes apart by instance name: the pod's name, or the default (host
		// name and process id, the pod's name in a pod), never one name for every replica.
		if id := cfg.Processor.Instance; p.replicated && id != "" && id != podNameStandIn {
			t.Errorf("%s: every replica is instance %q: set %s from metadata.name", p.where, id, config.EnvName("processor.instance"))
		}
		// A mount inside another: the runtime makes its mount point in the outer volume,
		// which a ConfigMap or Secret volume's updates may remove.
		for _, m := range p.container.VolumeMounts {
			for _, n := range p.container.VolumeMounts {
				if m.Name != n.Name && strings.HasPrefix(n.MountPath, strings.TrimSuffix(m.MountPath, "/")+"/") {
					t.Errorf("%s: volume %s is mounted inside volume %s (%s in %s)", p.where, n.Name, m.Name, n.MountPath, m.MountPath)
				}
			}
		}
		// Every file the configuration names must be mounted in the container.
		for field, file := range map[string]string{
			"nats.creds_file": cfg.NATS.CredsFile, "nats.nkey_file": cfg.NATS.NKeyFile,
			"nats.tls.ca_file": cfg.NATS.TLS.CAFile, "nats.tls.cert_file": cfg.NATS.TLS.CertFile, "nats.tls.key_file": cfg.NATS.TLS.KeyFile,
			"http.token_file": cfg.HTTP.TokenFile,
		} {
			if file == "" {
				continue
			}
			if _, err := mountedFile(o, p, file); err != nil {
				t.Errorf("%s: %s %s: %v", p.where, field, file, err)
			}
		}
	}
}

// loadConfig returns the configuration the pod's process loads, or nil after reporting
// why it would not start.
func loadConfig(t *testing.T, o *objects, p pod) *config.Config {
	t.Helper()
	file := flagValue(p.container.Args, "-c", "--config")
	if file == "" {
		t.Errorf("%s: args %q have no -c FILE", p.where, p.container.Args)
		return nil
	}
	data, err := mountedFile(o, p, file)
	if err != nil {
		t.Errorf("%s: -c %s: %v", p.where, file, err)
		return nil
	}
	local := filepath.Join(t.TempDir(), path.Base(file))
	if err := os.WriteFile(local, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(local, config.LoadOptions{Environ: environ(p, o.services)})
	if cfg == nil {
		t.Errorf("%s: %s does not load: %v", p.where, file, err)
		return nil
	}
	_, berr := pipeline.Build(cfg, builtin.Registry())
	if err := diag.Join(err, berr); err != nil {
		t.Errorf("%s: %s (with the pod's environment) is not valid:\n%v", p.where, file, err)
		return nil
	}
	return cfg
}

// flagValue returns the value of the first of names in args ("-c FILE" or "-c=FILE").
func flagValue(args []string, names ...string) string {
	for i, a := range args {
		for _, n := range names {
			if a == n && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, n+"="); ok {
				return v
			}
		}
	}
	return ""
}

// Stand-ins for the values the cluster gives through valueFrom.
const (
	podNameStandIn   = "jetfold-6d5f8c7b9-x2x4q"
	natsURLStandIn   = "nats://nats.invalid:4222"
	secretStandIn    = "stand-in-secret"
	clusterIPStandIn = "10.96.0.10"
)

// environ returns the environment of the pod's main container as Kubernetes makes it: its
// env (valueFrom replaced by stand-ins) and, unless enableServiceLinks is false, the
// variables of every Service of the rendering (kubelet's service links).
func environ(p pod, services []*corev1.Service) []string {
	var env []string
	if l := p.template.Spec.EnableServiceLinks; l == nil || *l {
		for _, s := range services {
			env = append(env, serviceLinks(s)...)
		}
	}
	for _, e := range p.container.Env {
		v := e.Value
		switch f := e.ValueFrom; {
		case f == nil:
		case f.FieldRef != nil && f.FieldRef.FieldPath == "metadata.name":
			v = podNameStandIn
		case f.SecretKeyRef != nil && strings.HasSuffix(e.Name, "_URL"):
			v = natsURLStandIn
		case f.SecretKeyRef != nil:
			v = secretStandIn
		default:
			v = "stand-in"
		}
		env = append(env, e.Name+"="+v)
	}
	return env
}

// serviceLinks returns the variables kubelet sets in a pod for service s (see
// pkg/kubelet/envvars of Kubernetes): JETFOLD_SERVICE_HOST, JETFOLD_PORT... for "jetfold".
func serviceLinks(s *corev1.Service) []string {
	if len(s.Spec.Ports) == 0 {
		return nil
	}
	name := strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
	first := s.Spec.Ports[0]
	env := []string{
		name + "_SERVICE_HOST=" + clusterIPStandIn,
		fmt.Sprintf("%s_SERVICE_PORT=%d", name, first.Port),
		fmt.Sprintf("%s_PORT=%s://%s:%d", name, strings.ToLower(string(protocol(first.Protocol))), clusterIPStandIn, first.Port),
	}
	for _, sp := range s.Spec.Ports {
		proto := string(protocol(sp.Protocol))
		if sp.Name != "" {
			env = append(env, fmt.Sprintf("%s_SERVICE_PORT_%s=%d", name, strings.ToUpper(strings.ReplaceAll(sp.Name, "-", "_")), sp.Port))
		}
		prefix := fmt.Sprintf("%s_PORT_%d_%s", name, sp.Port, proto)
		env = append(env,
			fmt.Sprintf("%s=%s://%s:%d", prefix, strings.ToLower(proto), clusterIPStandIn, sp.Port),
			prefix+"_PROTO="+strings.ToLower(proto),
			fmt.Sprintf("%s_PORT=%d", prefix, sp.Port),
			prefix+"_ADDR="+clusterIPStandIn)
	}
	return env
}

func protocol(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// mountedFile returns the content of the file at path in the pod's main container, when a
// ConfigMap of the rendering holds it, or a stand-in when a Secret does. It is an error for
// a path that no volume mount holds, and for a Secret file the container's user cannot read.
func mountedFile(o *objects, p pod, file string) ([]byte, error) {
	var mount *corev1.VolumeMount
	for i, m := range p.container.VolumeMounts {
		if rel, err := filepath.Rel(m.MountPath, file); err == nil && !strings.HasPrefix(rel, "..") && rel != "." &&
			(mount == nil || len(m.MountPath) > len(mount.MountPath)) {
			mount = &p.container.VolumeMounts[i]
		}
	}
	if mount == nil {
		return nil, errors.New("no volume is mounted there")
	}
	rel, _ := filepath.Rel(mount.MountPath, file)
	if mount.SubPath != "" {
		rel = path.Join(mount.SubPath, rel)
	}
	i := slices.IndexFunc(p.template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == mount.Name })
	if i < 0 {
		return nil, fmt.Errorf("volume %q is mounted but not declared", mount.Name)
	}
	v := p.template.Spec.Volumes[i]
	switch {
	case v.ConfigMap != nil:
		key, _, ok := itemKey(v.ConfigMap.Items, rel)
		if !ok {
			return nil, fmt.Errorf("ConfigMap volume %q has no item for %s", v.Name, rel)
		}
		j := slices.IndexFunc(o.configMaps, func(c *corev1.ConfigMap) bool { return c.Name == v.ConfigMap.Name })
		if j < 0 {
			return nil, fmt.Errorf("ConfigMap %q is not in the manifests", v.ConfigMap.Name)
		}
		data, ok := o.configMaps[j].Data[key]
		if !ok {
			return nil, fmt.Errorf("ConfigMap %q has no key %q", v.ConfigMap.Name, key)
		}
		return []byte(data), nil
	case v.Secret != nil:
		_, mode, ok := itemKey(v.Secret.Items, rel)
		if !ok {
			return nil, fmt.Errorf("Secret volume %q has no item for %s", v.Name, rel)
		}
		if mode == nil {
			mode = v.Secret.DefaultMode
		}
		perm := int32(0o644) // Kubernetes' default
		if mode != nil {
			perm = *mode
		}
		psc := p.template.Spec.SecurityContext
		if perm&0o004 == 0 && (perm&0o040 == 0 || psc == nil || psc.FSGroup == nil) {
			return nil, fmt.Errorf("Secret volume %q: mode %#o without fsGroup: the container's user cannot read it", v.Name, perm)
		}
		return []byte(secretStandIn), nil
	}
	return nil, fmt.Errorf("volume %q is neither a ConfigMap nor a Secret", v.Name)
}

// itemKey returns the key a ConfigMap or Secret volume shows at rel, and its item's mode.
func itemKey(items []corev1.KeyToPath, rel string) (key string, mode *int32, ok bool) {
	if len(items) == 0 {
		return rel, nil, !strings.Contains(rel, "/")
	}
	for _, it := range items {
		if path.Clean(it.Path) == rel {
			return it.Key, it.Mode, true
		}
	}
	return "", nil, false
}

// handler returns the processor's HTTP handler as `processor run` builds it, ready and
// connected, and the registry behind its /metrics.
func handler() (http.Handler, *prometheus.Registry) {
	reg := registry()
	return api.New(api.Options{Gatherer: reg, Ready: func() bool { return true }, Connected: func() bool { return true }}), reg
}

// get sends GET path to h and returns the status code.
func get(h http.Handler, path string) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code
}

// checkProbes checks that the Deployment's probes are HTTP GETs that the processor's handler
// answers 200 when ready, on the container port named http, which is the port the pods's
// configuration (file and environment) makes the processor listen on, on every address.
func checkProbes(t *testing.T, o *objects) {
	h, _ := handler()
	p := o.pods(t)[0]
	c := p.container
	port := containerPort(c, intstr.FromString(httpPortName))
	if port == 0 {
		t.Fatalf("%s: no container port named %s", p.where, httpPortName)
	}
	cfg := loadConfig(t, o, p)
	if cfg == nil {
		t.FailNow()
	}
	host, lport, err := net.SplitHostPort(cfg.HTTP.Listen)
	if err != nil {
		t.Fatalf("%s: http.listen %q: %v", p.where, cfg.HTTP.Listen, err)
	}
	if host != "" && host != "0.0.0.0" && host != "::" {
		t.Errorf("%s: http.listen is %q: kubelet and Prometheus reach the pod's address, not %s (set JETFOLD_HTTP_LISTEN=:%d)", p.where, cfg.HTTP.Listen, host, port)
	}
	if lport != strconv.Itoa(int(port)) {
		t.Errorf("%s: the processor listens on port %s (http.listen %q), the container port %s is %d", p.where, lport, cfg.HTTP.Listen, httpPortName, port)
	}
	probes := map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe}
	for _, name := range []string{"liveness", "readiness", "startup"} {
		pr := probes[name]
		if pr == nil {
			if name != "startup" {
				t.Errorf("%s: no %s probe", p.where, name)
			}
			continue
		}
		g := pr.HTTPGet
		if g == nil {
			t.Errorf("%s: the %s probe is not an HTTP GET", p.where, name)
			continue
		}
		if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP {
			t.Errorf("%s: %s probe: scheme %s, the processor serves HTTP", p.where, name, g.Scheme)
		}
		if got := containerPort(c, g.Port); got == 0 {
			t.Errorf("%s: %s probe: port %s is no port of the container (the processor listens on %d)", p.where, name, g.Port.String(), port)
		} else if got != port {
			t.Errorf("%s: %s probe: port %s is %d, the processor listens on %d", p.where, name, g.Port.String(), got, port)
		}
		if code := get(h, g.Path); code != http.StatusOK {
			t.Errorf("%s: %s probe: GET %s answers %d, want 200", p.where, name, g.Path, code)
		}
	}
	if c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet != nil && c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("%s: readiness probe on %s: /readyz is the one that tells NATS is connected", p.where, c.ReadinessProbe.HTTPGet.Path)
	}
}

// containerPort resolves a port (number or name) among the container's ports; 0 when it
// names none.
func containerPort(c *corev1.Container, p intstr.IntOrString) int32 {
	for _, cp := range c.Ports {
		if p.Type == intstr.String && cp.Name == p.StrVal || p.Type == intstr.Int && cp.ContainerPort == p.IntVal {
			return cp.ContainerPort
		}
	}
	return 0
}

// checkService checks that the Service selects the processors (and not the backup pods) on
// their http port, and that the ServiceMonitor scrapes a port of that Service on a path the
// handler serves.
func checkService(t *testing.T, o *objects) {
	h, _ := handler()
	ps := o.pods(t)
	if len(o.services) != 1 || len(o.serviceMonitors) != 1 {
		t.Fatalf("want 1 Service and 1 ServiceMonitor, got %d and %d", len(o.services), len(o.serviceMonitors))
	}
	s := o.services[0]
	sel := labels.SelectorFromSet(s.Spec.Selector)
	if len(s.Spec.Selector) == 0 || !sel.Matches(labels.Set(ps[0].template.Labels)) {
		t.Errorf("Service %s: selector %v does not select the processors (%v)", s.Name, s.Spec.Selector, ps[0].template.Labels)
	}
	for _, p := range ps[1:] {
		if sel.Matches(labels.Set(p.template.Labels)) {
			t.Errorf("Service %s: selector %v selects %s too", s.Name, s.Spec.Selector, p.where)
		}
	}
	for _, sp := range s.Spec.Ports {
		target := sp.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(sp.Port)
		}
		if containerPort(ps[0].container, target) == 0 {
			t.Errorf("Service %s: port %s targets %s, which is no port of the processor", s.Name, sp.Name, target.String())
		}
	}
	sm := o.serviceMonitors[0]
	msel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil || msel.Empty() || !msel.Matches(labels.Set(s.Labels)) {
		t.Errorf("ServiceMonitor %s: selector %v does not select Service %s (%v) (%v)", sm.Name, sm.Spec.Selector, s.Name, s.Labels, err)
	}
	if len(sm.Spec.Endpoints) == 0 {
		t.Errorf("ServiceMonitor %s: no endpoints", sm.Name)
	}
	for _, ep := range sm.Spec.Endpoints {
		if !slices.ContainsFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Name == ep.Port }) {
			t.Errorf("ServiceMonitor %s: endpoint port %q is no port of Service %s", sm.Name, ep.Port, s.Name)
		}
		p := ep.Path
		if p == "" {
			p = "/metrics"
		}
		if code := get(h, p); code != http.StatusOK {
			t.Errorf("ServiceMonitor %s: GET %s answers %d, want 200", sm.Name, p, code)
		}
	}
}

// envRef matches a $(VAR) that Kubernetes expands in args from the container's env.
var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkBackup checks the CronJob: `processor backup -c FILE -o FILE` with the processors'
// configuration file, writing to a mounted PersistentVolumeClaim of the manifests, with
// every $(VAR) of its args defined.
func checkBackup(t *testing.T, o *objects) {
	ps := o.pods(t)
	proc, backup := ps[0], ps[1]
	args := backup.container.Args
	if len(args) == 0 || args[0] != "backup" {
		t.Fatalf("%s: args %q: want backup -c FILE -o FILE", backup.where, args)
	}
	if a, b := flagValue(args, "-c", "--config"), flagValue(proc.container.Args, "-c", "--config"); a != b {
		t.Errorf("%s: -c %s, the processors read %s", backup.where, a, b)
	}
	for _, m := range envRef.FindAllStringSubmatch(strings.Join(args, " "), -1) {
		if !slices.ContainsFunc(backup.container.Env, func(e corev1.EnvVar) bool { return e.Name == m[1] }) {
			t.Errorf("%s: args use $(%s), which its env does not define (it would stay as written)", backup.where, m[1])
		}
	}
	out := flagValue(args, "-o", "--output")
	if out == "" {
		t.Fatalf("%s: args %q have no -o FILE", backup.where, args)
	}
	var claim string
	for _, m := range backup.container.VolumeMounts {
		if strings.HasPrefix(out, strings.TrimSuffix(m.MountPath, "/")+"/") && !m.ReadOnly {
			i := slices.IndexFunc(backup.template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
			if i >= 0 && backup.template.Spec.Volumes[i].PersistentVolumeClaim != nil {
				claim = backup.template.Spec.Volumes[i].PersistentVolumeClaim.ClaimName
			}
		}
	}
	if claim == "" {
		t.Errorf("%s: -o %s is on no writable PersistentVolumeClaim mount", backup.where, out)
	} else if !slices.ContainsFunc(o.pvcs, func(p *corev1.PersistentVolumeClaim) bool { return p.Name == claim }) {
		t.Errorf("%s: PersistentVolumeClaim %s is not in the manifests", backup.where, claim)
	}
	if psc := backup.template.Spec.SecurityContext; psc == nil || psc.FSGroup == nil {
		t.Errorf("%s: no fsGroup: a new volume is not writable by the nonroot user", backup.where)
	}
	if pol := o.cronJobs[0].Spec.ConcurrencyPolicy; pol != batchv1.ForbidConcurrent {
		t.Errorf("%s: concurrencyPolicy %q, want Forbid", backup.where, pol)
	}
}

// checkDisruptions checks the PodDisruptionBudget: it selects the processors, sets exactly
// one bound, and lets a drain evict one processor at a time.
func checkDisruptions(t *testing.T, o *objects, production bool) {
	if len(o.pdbs) != 1 {
		t.Fatalf("want 1 PodDisruptionBudget, got %d", len(o.pdbs))
	}
	pdb, d := o.pdbs[0], o.deployments[0]
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("PodDisruptionBudget %s: selector %v does not select the processors (%v)", pdb.Name, pdb.Spec.Selector, err)
	}
	if (pdb.Spec.MinAvailable == nil) == (pdb.Spec.MaxUnavailable == nil) {
		t.Fatalf("PodDisruptionBudget %s: want exactly one of minAvailable and maxUnavailable", pdb.Name)
	}
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	evictable := 0
	if m := pdb.Spec.MinAvailable; m != nil {
		n, err := intstr.GetScaledValueFromIntOrPercent(m, int(replicas), true)
		if err != nil {
			t.Fatal(err)
		}
		evictable = int(replicas) - n
	} else {
		n, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, int(replicas), true)
		if err != nil {
			t.Fatal(err)
		}
		evictable = n
	}
	if evictable != 1 {
		t.Errorf("PodDisruptionBudget %s: with %d replicas a drain may evict %d at a time, want 1", pdb.Name, replicas, evictable)
	}
	if production && (pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.String() != "2") {
		t.Errorf("PodDisruptionBudget %s: want minAvailable 2 of 3 in production, got %v", pdb.Name, pdb.Spec.MinAvailable)
	}
}

// checkProduction checks what the production overlay adds: 3 replicas spread over nodes,
// each pipeline in at least as many partitions as replicas (each replica has a share), and
// NATS reached with the URL and credentials of a Secret that the manifests reference by
// name and do not hold.
func checkProduction(t *testing.T, o *objects) {
	d := o.deployments[0]
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("Deployment %s: replicas %s, want 3", d.Name, fmtPtr(d.Spec.Replicas))
	}
	for _, p := range o.pods(t) {
		if !p.replicated || d.Spec.Replicas == nil {
			continue // the backup job runs no pipeline
		}
		cfg := loadConfig(t, o, p)
		if cfg == nil {
			continue
		}
		for _, pc := range cfg.Pipelines {
			if pc.Partitions < int(*d.Spec.Replicas) {
				t.Errorf("%s: pipeline %s in %d partitions, want at least one per replica (%d)", p.where, pc.Name, pc.Partitions, *d.Spec.Replicas)
			}
		}
	}
	spec := d.Spec.Template.Spec
	var terms []corev1.PodAffinityTerm
	if a := spec.Affinity; a != nil && a.PodAntiAffinity != nil {
		terms = a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
		for _, w := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			terms = append(terms, w.PodAffinityTerm)
		}
	}
	spread := slices.ContainsFunc(terms, func(term corev1.PodAffinityTerm) bool {
		sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
		return term.TopologyKey == "kubernetes.io/hostname" && err == nil && !sel.Empty() && sel.Matches(labels.Set(d.Spec.Template.Labels))
	})
	if !spread {
		t.Errorf("Deployment %s: no pod anti-affinity of the processors by kubernetes.io/hostname", d.Name)
	}
	for _, p := range o.pods(t) {
		vars := map[string]corev1.EnvVar{}
		for _, e := range p.container.Env {
			vars[e.Name] = e
		}
		url := vars[config.EnvName("nats.url")]
		if url.ValueFrom == nil || url.ValueFrom.SecretKeyRef == nil || url.ValueFrom.SecretKeyRef.Name != natsSecret {
			t.Errorf("%s: %s does not come from Secret %s", p.where, config.EnvName("nats.url"), natsSecret)
		}
		creds := vars[config.EnvName("nats.creds_file")]
		if creds.Value == "" {
			t.Errorf("%s: %s is not set", p.where, config.EnvName("nats.creds_file"))
			continue
		}
		// The file must come from that Secret.
		if _, err := mountedFile(o, p, creds.Value); err != nil {
			t.Errorf("%s: %s=%s: %v", p.where, creds.Name, creds.Value, err)
		}
		fromSecret := false
		for _, m := range p.container.VolumeMounts {
			if strings.HasPrefix(creds.Value, strings.TrimSuffix(m.MountPath, "/")+"/") {
				for _, v := range p.template.Spec.Volumes {
					fromSecret = fromSecret || v.Name == m.Name && v.Secret != nil && v.Secret.SecretName == natsSecret
				}
			}
		}
		if !fromSecret {
			t.Errorf("%s: %s=%s is not a file of Secret %s", p.where, creds.Name, creds.Value, natsSecret)
		}
	}
}

// fmtPtr formats *p, or "unset".
func fmtPtr[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

// registry returns a registry with the collectors `processor run` registers (see
// cmd/processor/run.go): the Go and process collectors and the pipelines' metrics.
func registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := pipeline.NewMetrics(reg)
	touch(m)
	return reg
}

// touch gives every metric vector of m one child, so that the registry gathers it: a vector
// without children is not exposed. It finds the label count by trying.
func touch(m *pipeline.Metrics) {
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		get := f.MethodByName("GetMetricWithLabelValues")
		if !get.IsValid() {
			continue
		}
		for n := range 5 {
			args := make([]reflect.Value, n)
			for j := range args {
				args[j] = reflect.ValueOf("x")
			}
			if out := get.Call(args); out[1].IsNil() {
				break
			}
		}
	}
}

// exposedNames returns the names of the series the registry exposes, as PromQL sees them:
// a histogram's _bucket, _sum and _count, a summary's own name and its _sum and _count.
func exposedNames(t *testing.T, reg prometheus.Gatherer) map[string]bool {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		n := mf.GetName()
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			names[n+"_bucket"], names[n+"_sum"], names[n+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			names[n], names[n+"_sum"], names[n+"_count"] = true, true, true
		default:
			names[n] = true
		}
	}
	return names
}

// Metrics that other programs export, which the alerts and the dashboard may name.
var externalMetrics = map[string]string{
	"up": "Prometheus, for each scrape target",
	"kube_pod_container_status_restarts_total": "kube-state-metrics",
}

var (
	// ownName matches the names of the metrics the processor exports.
	ownName = regexp.MustCompile(`\b(?:jetfold|go|process)_[A-Za-z0-9_:]*`)
	// selectorName matches any metric name followed by a label selector or a range.
	selectorName = regexp.MustCompile(`\b([A-Za-z_:][A-Za-z0-9_:]*)\s*[{\[]`)
	// resultLabel matches result="..." in a selector.
	resultLabel = regexp.MustCompile(`\bresult\s*=\s*"([^"]*)"`)
	// results are the values of the result label of jetfold_events_total.
	results = []string{pipeline.ResultOK, pipeline.ResultFiltered, pipeline.ResultDeadLetter,
		pipeline.ResultSkipped, pipeline.ResultOutdated, pipeline.ResultDuplicate}
)

// checkExpr reports the metrics expr names that the processor does not export (nor another
// program of externalMetrics), and result label values that are not results.
func checkExpr(t *testing.T, where, expr string, exposed map[string]bool) {
	t.Helper()
	names := map[string]bool{}
	for _, n := range ownName.FindAllString(expr, -1) {
		names[n] = true
	}
	for _, m := range selectorName.FindAllStringSubmatch(expr, -1) {
		names[m[1]] = true
	}
	if len(names) == 0 {
		t.Errorf("%s: %q names no metric", where, expr)
	}
	for n := range names {
		if !exposed[n] && externalMetrics[n] == "" {
			t.Errorf("%s: metric %s does not exist: the processor exports no such series (expression %q)", where, n, expr)
		}
	}
	for _, m := range resultLabel.FindAllStringSubmatch(expr, -1) {
		if !slices.Contains(results, m[1]) {
			t.Errorf("%s: result=%q is not a result of jetfold_events_total (%s)", where, m[1], strings.Join(results, ", "))
		}
	}
}

// checkMetrics checks the PrometheusRule and the Grafana dashboard against the metrics the
// processor exports.
func checkMetrics(t *testing.T, o *objects) {
	_, reg := handler()
	exposed := exposedNames(t, reg)
	t.Run("alerts", func(t *testing.T) { checkRules(t, o, exposed) })
	t.Run("dashboard", func(t *testing.T) { checkDashboard(t, o, exposed) })
}

func checkRules(t *testing.T, o *objects, exposed map[string]bool) {
	if len(o.rules) != 1 {
		t.Fatalf("want 1 PrometheusRule, got %d", len(o.rules))
	}
	// The functions of Prometheus' alert templates that the annotations use.
	funcs := template.FuncMap{"humanize": fmt.Sprint, "humanizeDuration": fmt.Sprint, "humanizePercentage": fmt.Sprint}
	seen := map[string]bool{}
	n := 0
	for _, g := range o.rules[0].Spec.Groups {
		for _, r := range g.Rules {
			n++
			where := "rule " + r.Alert + r.Record
			if r.Alert == "" {
				t.Errorf("%s: not an alert", where)
			}
			if seen[r.Alert] {
				t.Errorf("%s: two alerts of that name", where)
			}
			seen[r.Alert] = true
			checkExpr(t, where, r.Expr.String(), exposed)
			if r.For != nil {
				if _, err := model.ParseDuration(string(*r.For)); err != nil {
					t.Errorf("%s: for: %v", where, err)
				}
			}
			if sev := r.Labels["severity"]; sev != "warning" && sev != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", where, sev)
			}
			for _, a := range []string{"summary", "description"} {
				text, ok := r.Annotations[a]
				if !ok {
					t.Errorf("%s: no %s", where, a)
				}
				if err := expandAlertText(text, funcs); err != nil {
					t.Errorf("%s: %s: %v", where, a, err)
				}
			}
		}
	}
	if n == 0 {
		t.Error("the PrometheusRule has no rule")
	}
}

// expandAlertText expands an alert's annotation as Prometheus does: a Go template that
// sees $labels, $externalLabels and $value (the header Prometheus puts before the text).
func expandAlertText(text string, funcs template.FuncMap) error {
	const header = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$value := .Value}}"
	tpl, err := template.New("").Funcs(funcs).Option("missingkey=zero").Parse(header + text)
	if err != nil {
		return err
	}
	data := struct {
		Labels, ExternalLabels map[string]string
		Value                  float64
	}{Labels: map[string]string{"namespace": "jetfold", "pipeline": "carts", "pod": podNameStandIn}, Value: 1}
	return tpl.Execute(io.Discard, data)
}

// grafanaVar matches a Grafana variable in a query: $name or ${name}.
var grafanaVar = regexp.MustCompile(`\$\{?(\w+)\}?`)

// dashboard is the part of a Grafana dashboard's JSON that the test reads.
type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Datasource json.RawMessage `json:"datasource"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		RefID      string          `json:"refId"`
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

func checkDashboard(t *testing.T, o *objects, exposed map[string]bool) {
	var found []*corev1.ConfigMap
	for _, c := range o.configMaps {
		if c.Labels["grafana_dashboard"] != "" {
			found = append(found, c)
		}
	}
	if len(found) != 1 || len(found[0].Data) != 1 {
		t.Fatalf("want 1 ConfigMap labelled grafana_dashboard with one file, got %d", len(found))
	}
	for key, data := range found[0].Data {
		where := "dashboard " + key
		if !strings.HasSuffix(key, ".json") {
			t.Errorf("%s: the Grafana sidecar loads *.json", where)
		}
		var d dashboard
		if err := json.Unmarshal([]byte(data), &d); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: no uid or title", where)
		}
		vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
		for _, v := range d.Templating.List {
			vars[v.Name] = true
		}
		var exprs []string
		for _, v := range d.Templating.List {
			if v.Type == "query" {
				exprs = append(exprs, v.Definition)
				if !strings.Contains(string(v.Datasource), "${datasource}") {
					t.Errorf("%s: variable %s does not use the datasource variable", where, v.Name)
				}
			}
		}
		ids := map[int]bool{}
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				if ids[p.ID] {
					t.Errorf("%s: two panels have id %d", where, p.ID)
				}
				ids[p.ID] = true
				walk(p.Panels)
				if p.Type == "row" {
					continue
				}
				if len(p.Targets) == 0 {
					t.Errorf("%s: panel %q has no query", where, p.Title)
				}
				if !strings.Contains(string(p.Datasource), "${datasource}") {
					t.Errorf("%s: panel %q does not use the datasource variable", where, p.Title)
				}
				for _, tg := range p.Targets {
					if tg.Expr == "" || tg.RefID == "" {
						t.Errorf("%s: panel %q has a query without expr or refId", where, p.Title)
					}
					if tg.Datasource != nil && !strings.Contains(string(tg.Datasource), "${datasource}") {
						t.Errorf("%s: panel %q: query %s does not use the datasource variable", where, p.Title, tg.RefID)
					}
					exprs = append(exprs, tg.Expr)
				}
			}
		}
		walk(d.Panels)
		for _, e := range exprs {
			checkExpr(t, where, e, exposed)
			for _, m := range grafanaVar.FindAllStringSubmatch(e, -1) {
				if !vars[m[1]] {
					t.Errorf("%s: $%s is no variable of the dashboard (%q)", where, m[1], e)
				}
			}
		}
	}
}

// TestDecodeStrict checks the decoding the manifests' test relies on: an unknown field, a
// field in the wrong case and a Secret are errors.
func TestDecodeStrict(t *testing.T) {
	tests := []struct {
		name, apiVersion, kind, json string
		wantErr                      bool
	}{
		{"known fields", "apps/v1", "Deployment", `{"spec":{"replicas":3}}`, false},
		{"unknown field", "apps/v1", "Deployment", `{"spec":{"replica":3}}`, true},
		{"wrong case", "apps/v1", "Deployment", `{"spec":{"Replicas":3}}`, true},
		{"duplicate field", "v1", "Service", `{"spec":{"type":"ClusterIP","type":"NodePort"}}`, true},
		{"nested unknown field", "monitoring.coreos.com/v1", "ServiceMonitor", `{"spec":{"endpoints":[{"prot":"http"}]}}`, true},
		{"a Secret", "v1", "Secret", `{"stringData":{"url":"nats://x"}}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := (&objects{}).decodeObject(tt.apiVersion, tt.kind, []byte(tt.json))
			if (err != nil) != tt.wantErr {
				t.Errorf("err = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

// TestServiceLinks checks why the pods set enableServiceLinks: false: the variables
// Kubernetes would set for the jetfold Service stop the processor at start.
func TestServiceLinks(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pipelines.yaml")
	if err := os.WriteFile(file, []byte("nats: {url: nats://nats:4222}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "jetfold"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}}}
	env := serviceLinks(svc)
	if !slices.Contains(env, "JETFOLD_SERVICE_HOST="+clusterIPStandIn) || !slices.Contains(env, "JETFOLD_PORT=tcp://"+clusterIPStandIn+":8080") {
		t.Fatalf("serviceLinks = %q", env)
	}
	if _, err := config.Load(file, config.LoadOptions{Environ: env}); err == nil {
		t.Errorf("config.Load with the service links of Service jetfold: no error; the pods' enableServiceLinks: false may go")
	}
	if _, err := config.Load(file, config.LoadOptions{Environ: []string{}}); err != nil {
		t.Errorf("config.Load without them: %v", err)
	}
}

// natsValues is the part of k8s/nats/values.yaml (the NATS chart's values) the test reads.
type natsValues struct {
	Config struct {
		Cluster struct {
			Enabled  bool `json:"enabled"`
			Replicas int  `json:"replicas"`
		} `json:"cluster"`
		JetStream struct {
			Enabled   bool `json:"enabled"`
			FileStore struct {
				Enabled bool   `json:"enabled"`
				MaxSize string `json:"maxSize"`
				PVC     struct {
					Enabled bool   `json:"enabled"`
					Size    string `json:"size"`
				} `json:"pvc"`
			} `json:"fileStore"`
		} `json:"jetstream"`
	} `json:"config"`
}

// TestNATSValues checks that the NATS chart's values make a JetStream cluster on persistent
// volumes with as many servers as the pipelines' streams have replicas.
func TestNATSValues(t *testing.T) {
	data, err := os.ReadFile("nats/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v natsValues
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	c, js := v.Config.Cluster, v.Config.JetStream
	if !c.Enabled || c.Replicas < 3 {
		t.Errorf("config.cluster: enabled %v, replicas %d: want a cluster of 3 or more", c.Enabled, c.Replicas)
	}
	if !js.Enabled || !js.FileStore.Enabled || !js.FileStore.PVC.Enabled {
		t.Errorf("config.jetstream: want JetStream with file storage on a persistent volume")
	}
	size, err := resource.ParseQuantity(js.FileStore.PVC.Size)
	if err != nil {
		t.Errorf("config.jetstream.fileStore.pvc.size %q: %v", js.FileStore.PVC.Size, err)
	}
	if m := js.FileStore.MaxSize; m != "" {
		switch limit, err := resource.ParseQuantity(m); {
		case err != nil:
			t.Errorf("config.jetstream.fileStore.maxSize %q: %v", m, err)
		case limit.Cmp(size) >= 0:
			t.Errorf("config.jetstream.fileStore.maxSize %s: want a size below the volume's %s", m, js.FileStore.PVC.Size)
		}
	}
	for _, rc := range renderings {
		o := render(t, rc.dir)
		for _, p := range o.pods(t) {
			cfg := loadConfig(t, o, p)
			if cfg == nil {
				continue
			}
			for _, s := range cfg.Streams {
				if s.Replicas > c.Replicas {
					t.Errorf("%s %s: stream %s has %d replicas, the NATS cluster %d servers", rc.name, p.where, s.Name, s.Replicas, c.Replicas)
				}
			}
		}
	}
}
