// The Go SDKs against the target, retries off, every request counted: the Go counterpart of
// conformance/node/sdk_check.mjs, read by conformance/sdk.py. Input comes from the environment
// (keys never on the command line); one JSON line out per SDK run.
//
// OP_SDK_LIBRARY picks the SDK: "go-openai" (github.com/sashabaranov/go-openai, the one the
// reference names) or "openai-go" (OpenAI's official github.com/openai/openai-go/v3); empty runs
// both, one line each. OP_SDK_MODE is basic (list, complete, stream to the end), errors (401,
// 403, 404), errors-429 (the key is already over its limit; errors-429-chat asks a completion
// instead of the list) or retry-429 (the same with the SDK's own default retries, to measure what
// it does with Retry-After).
//
// The transport matches the suite's (opconform/transport.py): --ca-bundle added to the system
// roots (SSL_CERT_FILE is honoured by Go itself), the client certificate, --insecure, --header,
// and HTTP(S)_PROXY/ALL_PROXY/NO_PROXY with curl's semantics (Go's own ProxyFromEnvironment
// never proxies loopback, the suite does unless NO_PROXY names it).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	openaigo "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	goopenai "github.com/sashabaranov/go-openai"
)

const (
	goOpenAIModule = "github.com/sashabaranov/go-openai"
	openaiGoModule = "github.com/openai/openai-go/v3"
	unknownKey     = "op_sk_opconform_unknown_go_check"
	unknownModel   = "op-opconform-no-such-model"
)

// counter counts every request the SDK sends (retries included) and remembers the status of
// the last answer, so an error can be judged against what was on the wire.
type counter struct {
	next     http.RoundTripper
	headers  map[string]string
	mu       sync.Mutex
	requests int
	status   int
}

func (c *counter) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.requests++
	c.status = 0
	c.mu.Unlock()
	req = req.Clone(req.Context())
	for name, value := range c.headers {
		if req.Header.Get(name) == "" { // extra headers never replace what the SDK sets
			req.Header.Set(name, value)
		}
	}
	res, err := c.next.RoundTrip(req)
	if res != nil {
		c.mu.Lock()
		c.status = res.StatusCode
		c.mu.Unlock()
	}
	return res, err
}

func (c *counter) lastStatus() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

func firstEnv(names ...string) string {
	for _, name := range names {
		if value := os.Getenv(name); value != "" {
			return value
		}
	}
	return ""
}

// bypassed: curl's NO_PROXY (as httpx reads it): "*", hosts, domain suffixes, IP addresses.
func bypassed(host string) bool {
	host = strings.ToLower(strings.Trim(host, "[]"))
	for _, entry := range strings.Split(firstEnv("no_proxy", "NO_PROXY"), ",") {
		entry = strings.ToLower(strings.TrimSpace(entry))
		if entry == "" {
			continue
		}
		if entry == "*" {
			return true
		}
		if h, _, err := net.SplitHostPort(entry); err == nil {
			entry = h
		}
		entry = strings.TrimPrefix(strings.TrimPrefix(strings.Trim(entry, "[]"), "*"), ".")
		if host == entry || strings.HasSuffix(host, "."+entry) {
			return true
		}
	}
	return false
}

func envProxy(req *http.Request) (*url.URL, error) {
	if bypassed(req.URL.Hostname()) {
		return nil, nil
	}
	proxy := firstEnv("http_proxy", "HTTP_PROXY")
	if req.URL.Scheme == "https" {
		proxy = firstEnv("https_proxy", "HTTPS_PROXY")
	}
	if proxy == "" {
		proxy = firstEnv("all_proxy", "ALL_PROXY")
	}
	if proxy == "" {
		return nil, nil
	}
	if !strings.Contains(proxy, "://") {
		proxy = "http://" + proxy
	}
	return url.Parse(proxy)
}

func httpClient() (*http.Client, *counter, error) {
	tlsConfig := &tls.Config{}
	if bundle := os.Getenv("OP_SDK_CA_BUNDLE"); bundle != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(bundle)
		if err != nil {
			return nil, nil, err
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("%s: no PEM certificate in it", bundle)
		}
		tlsConfig.RootCAs = pool
	}
	if cert := os.Getenv("OP_SDK_CLIENT_CERT"); cert != "" {
		key := os.Getenv("OP_SDK_CLIENT_KEY")
		if key == "" {
			key = cert
		}
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, nil, err
		}
		tlsConfig.Certificates = []tls.Certificate{pair}
	}
	tlsConfig.InsecureSkipVerify = os.Getenv("OP_SDK_INSECURE") != ""
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig
	transport.Proxy = nil
	if os.Getenv("OP_SDK_ENV_PROXIES") != "" {
		transport.Proxy = envProxy
	}
	headers := map[string]string{}
	if raw := os.Getenv("OP_SDK_HEADERS"); raw != "" {
		if err := json.Unmarshal([]byte(raw), &headers); err != nil {
			return nil, nil, fmt.Errorf("OP_SDK_HEADERS: %w", err)
		}
	}
	connect, err := milliseconds("OP_SDK_CONNECT_TIMEOUT_MS")
	if err != nil {
		return nil, nil, err
	}
	read, err := milliseconds("OP_SDK_READ_TIMEOUT_MS")
	if err != nil {
		return nil, nil, err
	}
	request, err := milliseconds("OP_SDK_REQUEST_TIMEOUT_MS")
	if err != nil {
		return nil, nil, err
	}
	// What the Go SDKs can express and what we chose: both take an *http.Client (openai-go's
	// option.WithRequestTimeout is only a per-request context deadline), so the deadlines are
	// the transport's and the client's. --connect-timeout: the dial (to the target or a proxy)
	// and the TLS handshake. --read-timeout: ResponseHeaderTimeout, the silence between the
	// request and the headers; net/http has no deadline for silence inside a body, so there
	// the request deadline is the bound. --request-timeout: Client.Timeout, the whole exchange,
	// a streamed body included.
	transport.DialContext = (&net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}).DialContext
	transport.TLSHandshakeTimeout = connect
	transport.ResponseHeaderTimeout = read
	count := &counter{next: transport, headers: headers}
	return &http.Client{Transport: count, Timeout: request}, count, nil
}

// milliseconds: one of the run's deadlines (opconform/timeouts.py: RUNNER_VARIABLES), always given.
func milliseconds(name string) (time.Duration, error) {
	ms, err := strconv.Atoi(os.Getenv(name))
	if err != nil || ms <= 0 {
		return 0, fmt.Errorf("%s must be a whole number of milliseconds, not %q", name, os.Getenv(name))
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// outcome: what the SDK made of an error answer, next to the status that was on the wire.
type outcome struct {
	Status    int    `json:"status"`     // the wire's
	Type      string `json:"type"`       // the Go type of the error the SDK returned
	SDKStatus int    `json:"sdk_status"` // the status that error carries (0: none)
	Message   string `json:"message"`
	Sent      bool   `json:"sent"` // false: the SDK refused the call before sending anything
}

// sdk is one Go SDK behind the scenarios: each method returns the error the SDK returned.
type sdk interface {
	listModels(ctx context.Context) (ids []string, err error)
	complete(ctx context.Context, model, prompt string, maxTokens int) (string, error)
	stream(ctx context.Context, model, prompt string, maxTokens int) (text, finish string, err error)
	retrieve(ctx context.Context, model string) error
	withKey(key string) sdk
	classify(err error) outcome
}

// ------------------------------------------------------------------ go-openai
type goOpenAI struct {
	client *goopenai.Client
	http   *http.Client
	base   string
}

func newGoOpenAI(base, key string, client *http.Client) sdk {
	config := goopenai.DefaultConfig(key)
	config.BaseURL = base
	config.HTTPClient = client // go-openai never retries: nothing to turn off
	return &goOpenAI{client: goopenai.NewClientWithConfig(config), http: client, base: base}
}

func (g *goOpenAI) withKey(key string) sdk { return newGoOpenAI(g.base, key, g.http) }

func (g *goOpenAI) listModels(ctx context.Context) ([]string, error) {
	list, err := g.client.ListModels(ctx)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(list.Models))
	for _, m := range list.Models {
		ids = append(ids, m.ID)
	}
	return ids, nil
}

func (g *goOpenAI) request(model, prompt string, maxTokens int) goopenai.ChatCompletionRequest {
	return goopenai.ChatCompletionRequest{
		Model:     model,
		Messages:  []goopenai.ChatCompletionMessage{{Role: goopenai.ChatMessageRoleUser, Content: prompt}},
		MaxTokens: maxTokens,
	}
}

func (g *goOpenAI) complete(ctx context.Context, model, prompt string, maxTokens int) (string, error) {
	answer, err := g.client.CreateChatCompletion(ctx, g.request(model, prompt, maxTokens))
	if err != nil {
		return "", err
	}
	if len(answer.Choices) == 0 {
		return "", nil
	}
	return answer.Choices[0].Message.Content, nil
}

func (g *goOpenAI) stream(ctx context.Context, model, prompt string, maxTokens int) (string, string, error) {
	request := g.request(model, prompt, maxTokens)
	request.Stream = true
	stream, err := g.client.CreateChatCompletionStream(ctx, request)
	if err != nil {
		return "", "", err
	}
	defer stream.Close()
	var text strings.Builder
	finish := ""
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return text.String(), finish, nil
		}
		if err != nil {
			return text.String(), finish, err
		}
		for _, choice := range chunk.Choices {
			text.WriteString(choice.Delta.Content)
			if choice.FinishReason != "" {
				finish = string(choice.FinishReason)
			}
		}
	}
}

func (g *goOpenAI) retrieve(ctx context.Context, model string) error {
	_, err := g.client.GetModel(ctx, model)
	return err
}

func (g *goOpenAI) classify(err error) outcome {
	var apiErr *goopenai.APIError
	var requestErr *goopenai.RequestError
	switch {
	case errors.As(err, &requestErr):
		// The status came back, the body did not parse as {"error": {...}} (a half-read
		// APIError may be wrapped inside: this case first).
		return outcome{Type: "*openai.RequestError", SDKStatus: requestErr.HTTPStatusCode, Message: fmt.Sprint(requestErr.Err)}
	case errors.As(err, &apiErr):
		return outcome{Type: "*openai.APIError", SDKStatus: apiErr.HTTPStatusCode, Message: apiErr.Message}
	}
	return outcome{Type: fmt.Sprintf("%T", err), Message: err.Error()}
}

// ------------------------------------------------------------------ openai-go
type openaiGo struct {
	client  openaigo.Client
	http    *http.Client
	base    string
	retries int
}

func newOpenAIGo(base, key string, client *http.Client, retries int) sdk {
	return &openaiGo{
		client: openaigo.NewClient(
			option.WithBaseURL(base),
			option.WithAPIKey(key),
			option.WithHTTPClient(client),
			option.WithMaxRetries(retries),
		),
		http:    client,
		base:    base,
		retries: retries,
	}
}

func (o *openaiGo) withKey(key string) sdk { return newOpenAIGo(o.base, key, o.http, o.retries) }

func (o *openaiGo) listModels(ctx context.Context) ([]string, error) {
	page, err := o.client.Models.List(ctx)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(page.Data))
	for _, m := range page.Data {
		ids = append(ids, m.ID)
	}
	return ids, nil
}

func (o *openaiGo) params(model, prompt string, maxTokens int) openaigo.ChatCompletionNewParams {
	return openaigo.ChatCompletionNewParams{
		Model:     model,
		Messages:  []openaigo.ChatCompletionMessageParamUnion{openaigo.UserMessage(prompt)},
		MaxTokens: openaigo.Int(int64(maxTokens)),
	}
}

func (o *openaiGo) complete(ctx context.Context, model, prompt string, maxTokens int) (string, error) {
	answer, err := o.client.Chat.Completions.New(ctx, o.params(model, prompt, maxTokens))
	if err != nil {
		return "", err
	}
	if len(answer.Choices) == 0 {
		return "", nil
	}
	return answer.Choices[0].Message.Content, nil
}

func (o *openaiGo) stream(ctx context.Context, model, prompt string, maxTokens int) (string, string, error) {
	stream := o.client.Chat.Completions.NewStreaming(ctx, o.params(model, prompt, maxTokens))
	defer stream.Close()
	var text strings.Builder
	finish := ""
	for stream.Next() {
		for _, choice := range stream.Current().Choices {
			text.WriteString(choice.Delta.Content)
			if choice.FinishReason != "" {
				finish = choice.FinishReason
			}
		}
	}
	return text.String(), finish, stream.Err()
}

func (o *openaiGo) retrieve(ctx context.Context, model string) error {
	_, err := o.client.Models.Get(ctx, model)
	return err
}

func (o *openaiGo) classify(err error) outcome {
	var apiErr *openaigo.Error
	if errors.As(err, &apiErr) {
		return outcome{Type: "*openai.Error", SDKStatus: apiErr.StatusCode, Message: apiErr.Message}
	}
	return outcome{Type: fmt.Sprintf("%T", err), Message: err.Error()}
}

// ------------------------------------------------------------------ scenarios
func moduleVersion(path string) string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == path {
				return dep.Version
			}
		}
	}
	return "unknown"
}

func run(name string, env func(string) string) map[string]any {
	result := map[string]any{"sdk": name, "requests": 0}
	client, count, err := httpClient()
	if err != nil {
		result["error"] = "transport: " + err.Error()
		return result
	}
	base, key, mode := env("OP_SDK_BASE_URL"), env("OP_SDK_KEY"), env("OP_SDK_MODE")
	retries := 0
	if mode == "retry-429" { // the SDK as shipped: its own default retries
		retries = 2
	}
	var main sdk
	switch name {
	case "go-openai":
		result["version"] = moduleVersion(goOpenAIModule)
		main = newGoOpenAI(base, key, client)
	case "openai-go":
		result["version"] = moduleVersion(openaiGoModule)
		main = newOpenAIGo(base, key, client, retries)
	default:
		result["error"] = "unknown OP_SDK_LIBRARY " + strconv.Quote(name)
		return result
	}
	ctx := context.Background()
	model, prompt := env("OP_SDK_MODEL"), env("OP_SDK_PROMPT")
	maxTokens, _ := strconv.Atoi(env("OP_SDK_MAX_TOKENS"))
	if maxTokens <= 0 {
		maxTokens = 16
	}
	// Each call starts from the count it found, so an outcome knows whether anything was sent
	// (go-openai refuses max_tokens for reasoning models before sending, for one).
	sentBefore := 0
	begin := func() { sentBefore = count.requests }
	judged := func(err error) outcome {
		seen := outcome{Type: "no error"}
		if err != nil {
			seen = main.classify(err)
		}
		seen.Status = count.lastStatus()
		seen.Sent = count.requests > sentBefore
		if !seen.Sent {
			seen.Status = 0
		}
		return seen
	}
	step := ""
	fail := func(err error) {
		result["error"] = fmt.Sprintf("%s: %T: %v", step, err, err)
		result["step"] = step
		result["outcome"] = judged(err)
	}
	switch mode {
	case "basic":
		step = "list models"
		begin()
		ids, err := main.listModels(ctx)
		if err != nil {
			fail(err)
			break
		}
		result["models"] = len(ids)
		result["has_model"] = contains(ids, model)
		step = "chat completion"
		begin()
		text, err := main.complete(ctx, model, prompt, maxTokens)
		if err != nil {
			fail(err)
			break
		}
		result["completion"] = text
		step = "stream"
		begin()
		streamed, finish, err := main.stream(ctx, model, prompt, maxTokens)
		result["streamed"], result["finish_reason"] = streamed, finish
		if err != nil {
			fail(err)
		}
	case "errors":
		begin()
		_, err := main.withKey(unknownKey).listModels(ctx)
		result["authentication"] = judged(err)
		if restricted, forbidden := env("OP_SDK_RESTRICTED_KEY"), env("OP_SDK_RESTRICTED_MODEL"); restricted != "" && forbidden != "" {
			begin()
			_, err := main.withKey(restricted).complete(ctx, forbidden, "hi", 4)
			result["permission"] = judged(err)
		}
		begin()
		result["not_found"] = judged(main.retrieve(ctx, unknownModel))
	case "errors-429", "retry-429", "errors-429-chat":
		began := time.Now()
		begin()
		var err error
		if mode == "errors-429-chat" { // a limiter that counts only completions (LiteLLM)
			_, err = main.complete(ctx, model, "Say hi.", 1)
		} else {
			_, err = main.listModels(ctx)
		}
		result["rate_limit"] = judged(err)
		result["seconds"] = time.Since(began).Seconds()
	default:
		result["error"] = "unknown OP_SDK_MODE " + strconv.Quote(mode)
	}
	result["requests"] = count.requests
	return result
}

func contains(ids []string, id string) bool {
	for _, each := range ids {
		if each == id {
			return true
		}
	}
	return false
}

func main() {
	libraries := []string{"go-openai", "openai-go"}
	if chosen := os.Getenv("OP_SDK_LIBRARY"); chosen != "" {
		libraries = []string{chosen}
	}
	out := json.NewEncoder(os.Stdout)
	for _, name := range libraries {
		_ = out.Encode(run(name, os.Getenv))
	}
}
