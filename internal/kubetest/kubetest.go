package kubetest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// DefaultVersion is the kube-apiserver version used when neither Options.Version nor K8S_VERSION says otherwise:
// the one test/k8s/kube-apiserver.sh builds by default.
const DefaultVersion = "1.37.2"

// DefaultCacheDir is where test/k8s/kube-apiserver.sh puts the binary (as v<version>/kube-apiserver) unless
// AGENTAUTH_K8S_CACHE says otherwise.
const DefaultCacheDir = "/var/cache/agentauth/kube-apiserver"

// DefaultReadyTimeout bounds how long Start waits for /readyz: generous, for a loaded machine.
const DefaultReadyTimeout = 3 * time.Minute

// ErrUnavailable is wrapped by Start's error when the kube-apiserver binary or etcd is not installed.
var ErrUnavailable = errors.New("kubetest: kube-apiserver or etcd not available")

// Issuer is the service-account token issuer (iss) and default audience of the API server.
const Issuer = "https://kubernetes.default.svc.cluster.local"

// AdminUser is the user the admin token authenticates as (group system:masters).
const AdminUser = "kubetest-admin"

// Options configure Start; the zero value is fine.
type Options struct {
	// Version of kube-apiserver to look up in the cache; empty means K8S_VERSION or DefaultVersion.
	Version string
	// Args are extra kube-apiserver flags (--name=value), appended after the harness's own.
	Args []string
	// ReadyTimeout bounds the wait for /readyz; zero means DefaultReadyTimeout.
	ReadyTimeout time.Duration
}

// Server is a running etcd and kube-apiserver. Stop ends both and removes their files.
type Server struct {
	// Config authenticates as AdminUser, a member of system:masters. Copy it before changing it.
	Config *rest.Config
	// Client is a clientset for Config.
	Client kubernetes.Interface
	// ServiceAccountKey signs the API server's service-account tokens (ECDSA P-256, ES256), for tests that need a
	// token the TokenRequest API will not make (one already expired, for instance).
	ServiceAccountKey crypto.Signer

	dir       string
	etcd      *proc
	apiserver *proc
}

// proc is a child process and a channel closed when it has exited.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// Binaries returns the paths of the kube-apiserver and etcd binaries for version (empty: K8S_VERSION or
// DefaultVersion), or an error wrapping ErrUnavailable that says how to get the missing one. The binary is looked
// up where test/k8s/kube-apiserver.sh caches it: $AGENTAUTH_K8S_CACHE (default DefaultCacheDir)/v<version>/.
func Binaries(version string) (apiserver, etcd string, err error) {
	if version == "" {
		version = os.Getenv("K8S_VERSION")
	}
	if version == "" {
		version = DefaultVersion
	}
	version = strings.TrimPrefix(version, "v")
	cache := os.Getenv("AGENTAUTH_K8S_CACHE")
	if cache == "" {
		cache = DefaultCacheDir
	}
	apiserver = filepath.Join(cache, "v"+version, "kube-apiserver")
	if fi, statErr := os.Stat(apiserver); statErr != nil || fi.Mode()&0o111 == 0 {
		return "", "", fmt.Errorf("%w: no kube-apiserver v%s at %s (build it with test/k8s/kube-apiserver.sh, ~25 minutes)", ErrUnavailable, version, apiserver)
	}
	etcd, err = exec.LookPath("etcd")
	if err != nil {
		return "", "", fmt.Errorf("%w: no etcd in PATH (apt-get install etcd-server)", ErrUnavailable)
	}
	return apiserver, etcd, nil
}

// Start starts etcd and kube-apiserver on loopback and waits until the API server is ready (ctx and
// opts.ReadyTimeout bound the wait). On error nothing is left running.
func Start(ctx context.Context, opts Options) (*Server, error) {
	apiserverBin, etcdBin, err := Binaries(opts.Version)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kubetest-")
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	s := &Server{dir: dir}
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()
	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = DefaultReadyTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	etcdURL, err := s.startEtcd(ctx, etcdBin)
	if err != nil {
		return nil, err
	}
	if err := s.startAPIServer(ctx, apiserverBin, etcdURL, opts.Args); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// Stop ends kube-apiserver and etcd (SIGTERM, then SIGKILL after a grace period) and removes their files.
func (s *Server) Stop() {
	stop(s.apiserver)
	stop(s.etcd)
	s.apiserver, s.etcd = nil, nil
	_ = os.RemoveAll(s.dir)
}

// WriteKubeconfig writes a kubeconfig file (mode 0600) for the admin user to path, for the processes a test starts.
func (s *Server) WriteKubeconfig(path string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: s.Config.Host, CertificateAuthorityData: s.Config.CAData}
	cfg.AuthInfos[AdminUser] = &clientcmdapi.AuthInfo{Token: s.Config.BearerToken}
	cfg.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: AdminUser}
	cfg.CurrentContext = "kubetest"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	return nil
}

// Impersonate returns a copy of the admin config that acts as user with groups (the API server adds
// system:authenticated, and a service account's groups for a service-account user name).
func (s *Server) Impersonate(user string, groups ...string) *rest.Config {
	c := rest.CopyConfig(s.Config)
	c.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	return c
}

// ImpersonateServiceAccount returns a copy of the admin config that acts as the service account namespace/name.
func (s *Server) ImpersonateServiceAccount(namespace, name string) *rest.Config {
	return s.Impersonate("system:serviceaccount:"+namespace+":"+name,
		"system:serviceaccounts", "system:serviceaccounts:"+namespace)
}

func (s *Server) startEtcd(ctx context.Context, bin string) (string, error) {
	ports, err := freePorts(2)
	if err != nil {
		return "", err
	}
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	s.etcd, err = s.spawn(bin, "etcd.log",
		"--name=kubetest",
		"--data-dir="+filepath.Join(s.dir, "etcd"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=kubetest="+peer,
		"--log-level=warn", "--logger=zap",
	)
	if err != nil {
		return "", err
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	err = s.poll(ctx, s.etcd, "etcd.log", func() error {
		resp, err := hc.Get(client + "/health")
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("etcd /health: %s", resp.Status)
		}
		return nil
	})
	return client, err
}

func (s *Server) startAPIServer(ctx context.Context, bin, etcdURL string, extra []string) error {
	certs := filepath.Join(s.dir, "pki")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	caPEM, err := writeServingCert(certs)
	if err != nil {
		return err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	s.ServiceAccountKey = saKey
	saKeyDER, err := x509.MarshalPKCS8PrivateKey(saKey)
	if err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	token := rand.Text()
	files := map[string][]byte{
		"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: saKeyDER}),
		"sa.pub":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPubDER}),
		"tokens.csv": []byte(token + "," + AdminUser + "," + AdminUser + ",system:masters\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(certs, name), data, 0o600); err != nil {
			return fmt.Errorf("kubetest: %w", err)
		}
	}
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// The "kubernetes" Service's endpoints may not be on loopback; nothing here needs them.
		"--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(ports[0]),
		"--tls-cert-file=" + filepath.Join(certs, "serving.crt"),
		"--tls-private-key-file=" + filepath.Join(certs, "serving.key"),
		"--token-auth-file=" + filepath.Join(certs, "tokens.csv"),
		"--anonymous-auth=false",
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=" + Issuer,
		"--service-account-key-file=" + filepath.Join(certs, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(certs, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/24",
		"--allow-privileged=true",
		"--v=1",
	}
	s.apiserver, err = s.spawn(bin, "kube-apiserver.log", append(args, extra...)...)
	if err != nil {
		return err
	}
	s.Config = &rest.Config{
		Host:            "https://127.0.0.1:" + strconv.Itoa(ports[0]),
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: caPEM},
		// Tests create objects in bursts; client-go's default of 5/s would make them wait.
		QPS: 200, Burst: 400,
	}
	s.Client, err = kubernetes.NewForConfig(s.Config)
	if err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	return s.poll(ctx, s.apiserver, "kube-apiserver.log", func() error {
		body, err := s.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("/readyz: %w: %s", err, body)
		}
		return nil
	})
}

// spawn starts bin with args, its output going to logName in the server's directory. The process is killed if the
// test process dies first.
func (s *Server) spawn(bin, logName string, args ...string) (*proc, error) {
	log, err := os.Create(filepath.Join(s.dir, logName))
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	defer log.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that started the child ends, not the test process, and the Go runtime
		// ends a thread whose goroutine exits while locked to it: the child is started from a thread this goroutine
		// holds until the child has exited.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := cmd.Start()
		started <- err
		if err == nil {
			_ = cmd.Wait()
		}
		close(p.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("kubetest: starting %s: %w", bin, err)
	}
	return p, nil
}

// poll calls check until it succeeds, cmd exits, or ctx ends; the error then has the tail of cmd's log.
func (s *Server) poll(ctx context.Context, p *proc, logName string, check func() error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("kubetest: %s exited (%v) before it was ready; its log ends:\n%s", logName, p.cmd.ProcessState, s.logTail(logName))
		case <-ctx.Done():
			return fmt.Errorf("kubetest: %s not ready: %w (last: %v); its log ends:\n%s", logName, ctx.Err(), err, s.logTail(logName))
		case <-tick.C:
		}
	}
}

func (s *Server) logTail(name string) string {
	data, _ := os.ReadFile(filepath.Join(s.dir, name))
	const max = 4 << 10
	if len(data) > max {
		data = data[len(data)-max:]
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	return string(data)
}

// stopGrace is how long stop waits after SIGTERM before it kills the process.
const stopGrace = 15 * time.Second

func stop(p *proc) {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopGrace):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// freePorts returns n distinct loopback TCP ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("kubetest: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// writeServingCert writes a throwaway CA's certificate-signed serving certificate and key for 127.0.0.1 to dir
// (serving.crt, serving.key) and returns the CA certificate in PEM.
func writeServingCert(dir string) ([]byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubetest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost", "kubernetes.default.svc"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "serving.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "serving.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}
