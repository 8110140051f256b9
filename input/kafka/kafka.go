// Package kafka is the `kafka` input: it consumes topics as a member of a
// consumer group and commits, per partition, only what the pipeline has
// durably taken.
//
// The acknowledgement chain is the tail's, with partition offsets instead
// of file offsets (docs/architecture.md, "Acknowledgements and
// checkpoints"): each poll's records of one partition are emitted as one
// batch; each record carries its own event.Ack, released when every
// reference is (the record is in the outputs' disk buffers, delivered
// from a memory buffer, or dropped by a filter or by no route matching),
// and the partition's acknowledged offset advances over the prefix of
// released records. The committer commits acknowledged offset + 1 (Kafka's
// "next record to read") as soon as it moves, at most once per
// commit_interval (a group commit); the same commit runs when partitions
// are revoked in a rebalance (after waiting up to revoke_timeout for the
// records already emitted) and on a stop. Autocommit is off.
//
// Records are tracked one by one (one Ack each): the commit is the
// highest contiguous acknowledged offset + 1.
//
// A crash re-reads at most what was acknowledged and not yet committed
// (one group commit) plus what was emitted and not acknowledged; each
// record keeps its id (the producer's sidelog-source-id header, else
// topic/partition/offset) in event.Event.ID, so an output with stable ids
// (elasticsearch id: source) writes a record read twice once.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sidelog/sidelog/event"
	"github.com/sidelog/sidelog/input"
	"github.com/sidelog/sidelog/internal/kafkaconf"
	"github.com/sidelog/sidelog/output/sourceid"
	"github.com/sidelog/sidelog/plugins"
)

func init() {
	plugins.RegisterInput("kafka", plugins.Input{
		Config: func() any { return NewConfig() },
		New: func(cfg any, env input.Env) (input.Input, error) {
			c, ok := cfg.(*Config)
			if !ok {
				return nil, fmt.Errorf("kafka: config is %T, not *kafka.Config", cfg)
			}
			return New(c, env)
		},
	})
}

// Input is the kafka input.
type Input struct {
	cfg  Config
	env  input.Env
	log  *slog.Logger
	opts []kgo.Opt

	mu    sync.Mutex
	parts map[tp]*partition // assigned partitions
	cl    *kgo.Client

	wake chan struct{} // an acknowledged offset moved

	noPeriodic bool // tests: commit only on revoke and stop
}

type tp struct {
	topic string
	part  int32
}

// New builds the input; it contacts no broker until Run.
func New(cfg *Config, env input.Env) (*Input, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	in := &Input{cfg: *cfg, env: env, log: log, parts: map[tp]*partition{}, wake: make(chan struct{}, 1)}
	if env.ExitOnEOF {
		// A topic has no end: the input consumes until the agent is
		// stopped, and a run with exit_on_eof then ends only on a signal.
		log.Warn("kafka: exit_on_eof does not apply to a kafka input: it consumes until the agent is stopped (SIGTERM)", "input", env.Name)
	}
	opts, err := cfg.Conn.Opts()
	if err != nil {
		return nil, err
	}
	start := kgo.NewOffset().AtStart()
	if cfg.StartOffset == "latest" {
		start = kgo.NewOffset().AtEnd()
	}
	opts = append(opts,
		kgo.ConsumerGroup(cfg.Group),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.ConsumeResetOffset(start),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.OnPartitionsAssigned(in.assigned),
		kgo.OnPartitionsRevoked(in.revoked),
		kgo.OnPartitionsLost(in.lost),
		kgo.WithLogger(kafkaconf.Logger(log)),
	)
	if cfg.TopicRegex != "" {
		opts = append(opts, kgo.ConsumeRegex(), kgo.ConsumeTopics(cfg.TopicRegex))
	} else {
		opts = append(opts, kgo.ConsumeTopics(cfg.Topics...))
	}
	in.opts = opts
	return in, nil
}

// Run consumes until ctx ends, then waits for the acknowledgements of what
// it emitted (until Env.ShutdownDeadline, or drain_timeout outside a
// pipeline), commits, leaves the group and returns.
func (in *Input) Run(ctx context.Context, emit input.Emit) error {
	cl, err := kgo.NewClient(in.opts...)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	in.mu.Lock()
	in.cl = cl
	in.mu.Unlock()

	cctx, stopCommitter := context.WithCancel(context.Background())
	committerDone := make(chan struct{})
	go func() {
		defer close(committerDone)
		in.committer(cctx, cl)
	}()

	var runErr error
	lastErr := map[string]time.Time{}
	for ctx.Err() == nil {
		fs := cl.PollRecords(ctx, in.cfg.MaxPollRecords)
		if ctx.Err() != nil {
			break
		}
		if fs.IsClientClosed() {
			break
		}
		fs.EachError(func(topic string, part int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			key := topic + "/" + strconv.Itoa(int(part)) + ": " + err.Error()
			if time.Since(lastErr[key]) > time.Minute {
				lastErr[key] = time.Now()
				in.log.Error("kafka: fetch failed", "input", in.env.Name, "topic", topic, "partition", part, "error", err.Error())
			}
		})
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if runErr != nil {
				return
			}
			pt := in.partition(p.Topic, p.Partition)
			pt.hwm.Store(p.HighWatermark)
			if len(p.Records) == 0 {
				return
			}
			if err := emit(in.batch(pt, p.Records)); err != nil {
				runErr = err
			}
		})
		if runErr != nil {
			break // the pipeline aborts
		}
	}

	// Stop: wait for the acknowledgements, commit, leave.
	if runErr == nil {
		in.waitAcked(nil, in.drainDeadline())
	}
	stopCommitter()
	<-committerDone
	fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	in.commit(fctx, cl, nil)
	cancel()
	cl.Close() // leaves the group; revoked() commits again (no-op)
	return nil
}

// drainDeadline is the channel that ends the wait for acknowledgements on
// a stop.
func (in *Input) drainDeadline() <-chan struct{} {
	if in.env.ShutdownDeadline != nil {
		return in.env.ShutdownDeadline
	}
	ch := make(chan struct{})
	time.AfterFunc(in.cfg.DrainTimeout, func() { close(ch) })
	return ch
}

// batch turns one partition's polled records into events. Each record
// has its own Ack, so the commit reaches exactly the highest contiguous
// acknowledged offset (a filter that drops or a route that misses a
// record releases it at once: it counts as taken).
func (in *Input) batch(pt *partition, recs []*kgo.Record) []*event.Event {
	slab := make([]event.Event, len(recs))
	batch := make([]*event.Event, len(recs))
	path := pt.topic + "/" + strconv.Itoa(int(pt.part))
	pt.setFirst(recs[0].Offset)
	for i, r := range recs {
		seq := pt.add(r.Offset+1, r.LeaderEpoch)
		e := &slab[i]
		e.Raw = r.Value
		e.Input = in.env.Name
		e.Path = path
		e.Time = r.Timestamp
		e.Pos = event.Position{Offset: r.Offset}
		e.ID = recordID(r, path)
		e.SetAck(event.NewAck(1, func() { in.released(pt, seq) }))
		batch[i] = e
	}
	return batch
}

func (in *Input) released(pt *partition, seq uint64) {
	if pt.done(seq) {
		select {
		case in.wake <- struct{}{}:
		default:
		}
	}
}

// recordID is the record's stable id: the source-id header an upstream
// sidelog wrote, else topic/partition/offset.
func recordID(r *kgo.Record, path string) string {
	for _, h := range r.Headers {
		if h.Key == sourceid.Header && len(h.Value) > 0 {
			return string(h.Value)
		}
	}
	return path + "/" + strconv.FormatInt(r.Offset, 10)
}

// partition returns the tracker of an assigned partition, or a detached
// one (its acknowledgements are not committed) when the partition was
// revoked meanwhile.
func (in *Input) partition(topic string, part int32) *partition {
	in.mu.Lock()
	defer in.mu.Unlock()
	if pt := in.parts[tp{topic, part}]; pt != nil {
		return pt
	}
	return newPartition(topic, part)
}

func (in *Input) assigned(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for topic, ps := range m {
		for _, p := range ps {
			if in.parts[tp{topic, p}] == nil {
				in.parts[tp{topic, p}] = newPartition(topic, p)
			}
		}
	}
	in.log.Info("kafka: partitions assigned", "input", in.env.Name, "partitions", fmt.Sprint(m))
}

// revoked waits (up to revoke_timeout) for the emitted records of the
// revoked partitions to be acknowledged, commits them and forgets the
// partitions.
func (in *Input) revoked(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
	var pts []*partition
	in.mu.Lock()
	for topic, ps := range m {
		for _, p := range ps {
			if pt := in.parts[tp{topic, p}]; pt != nil {
				pts = append(pts, pt)
			}
		}
	}
	in.mu.Unlock()
	if len(pts) == 0 {
		return
	}
	dl := make(chan struct{})
	t := time.AfterFunc(in.cfg.RevokeTimeout, func() { close(dl) })
	in.waitAcked(pts, dl)
	t.Stop()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	in.commit(cctx, cl, pts)
	cancel()
	in.forget(m)
	in.log.Info("kafka: partitions revoked", "input", in.env.Name, "partitions", fmt.Sprint(m))
}

// lost forgets partitions without committing: the group has moved on.
func (in *Input) lost(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	in.forget(m)
	in.log.Warn("kafka: partitions lost (their records may be read again by another member)", "input", in.env.Name, "partitions", fmt.Sprint(m))
}

func (in *Input) forget(m map[string][]int32) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for topic, ps := range m {
		for _, p := range ps {
			if pt := in.parts[tp{topic, p}]; pt != nil {
				pt.detach()
				delete(in.parts, tp{topic, p})
			}
		}
	}
}

// waitAcked waits until every batch emitted from pts (nil: every assigned
// partition) is acknowledged, or until dl is closed.
func (in *Input) waitAcked(pts []*partition, dl <-chan struct{}) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		list := pts
		if list == nil {
			list = in.assignedList()
		}
		out := 0
		for _, pt := range list {
			out += pt.outstanding()
		}
		if out == 0 {
			return
		}
		select {
		case <-dl:
			in.log.Warn("kafka: stopped waiting for acknowledgements: those records are read again at the next start", "input", in.env.Name, "batches", out)
			return
		case <-tick.C:
		}
	}
}

func (in *Input) assignedList() []*partition {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]*partition, 0, len(in.parts))
	for _, pt := range in.parts {
		out = append(out, pt)
	}
	return out
}

// committer commits acknowledged offsets as soon as they move, at most
// once per commit_interval, until ctx ends. Every lagRefresh it also reads
// the assigned partitions' end offsets (an idle partition is absent from
// fetch responses, so its high watermark would never be known).
func (in *Input) committer(ctx context.Context, cl *kgo.Client) {
	refresh := time.NewTicker(lagRefresh)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-refresh.C:
			in.refreshEnds(ctx, cl)
			continue
		case <-in.wake:
		}
		if in.noPeriodic {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		in.commit(cctx, cl, nil)
		cancel()
		if in.cfg.CommitInterval > 0 {
			t := time.NewTimer(in.cfg.CommitInterval)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// lagRefresh is how often the end offsets of assigned partitions are read
// for the lag metric.
const lagRefresh = 5 * time.Second

// refreshEnds reads the end offsets (high watermarks) of the assigned
// partitions.
func (in *Input) refreshEnds(ctx context.Context, cl *kgo.Client) {
	pts := in.assignedList()
	if len(pts) == 0 {
		return
	}
	req := kmsg.NewPtrListOffsetsRequest()
	req.IsolationLevel = 1 // read committed, as the consumer
	byTopic := map[string]int{}
	for _, pt := range pts {
		i, ok := byTopic[pt.topic]
		if !ok {
			t := kmsg.NewListOffsetsRequestTopic()
			t.Topic = pt.topic
			req.Topics = append(req.Topics, t)
			i = len(req.Topics) - 1
			byTopic[pt.topic] = i
		}
		p := kmsg.NewListOffsetsRequestTopicPartition()
		p.Partition = pt.part
		p.Timestamp = -1 // the end
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, p)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := req.RequestWith(rctx, cl)
	if err != nil {
		return
	}
	ends := map[tp]int64{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode == 0 {
				ends[tp{t.Topic, p.Partition}] = p.Offset
			}
		}
	}
	for _, pt := range pts {
		if e, ok := ends[tp{pt.topic, pt.part}]; ok && e > pt.hwm.Load() {
			pt.hwm.Store(e)
		}
	}
}

// commit commits the acknowledged offsets of pts (nil: every assigned
// partition) that moved since their last commit.
func (in *Input) commit(ctx context.Context, cl *kgo.Client, pts []*partition) {
	if pts == nil {
		pts = in.assignedList()
	}
	offsets := map[string]map[int32]kgo.EpochOffset{}
	var todo []*partition
	var at []int64
	for _, pt := range pts {
		off, epoch, ok := pt.toCommit()
		if !ok {
			continue
		}
		if offsets[pt.topic] == nil {
			offsets[pt.topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[pt.topic][pt.part] = kgo.EpochOffset{Epoch: epoch, Offset: off}
		todo = append(todo, pt)
		at = append(at, off)
	}
	if len(todo) == 0 {
		return
	}
	var cerr error
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		failed := map[tp]error{}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					failed[tp{t.Topic, p.Partition}] = fmt.Errorf("error code %d", p.ErrorCode)
				}
			}
		}
		for i, pt := range todo {
			if failed[tp{pt.topic, pt.part}] == nil {
				pt.committed(at[i])
			} else if cerr == nil {
				cerr = failed[tp{pt.topic, pt.part}]
			}
		}
	})
	if cerr != nil && ctx.Err() == nil {
		in.log.Warn("kafka: offset commit failed (retried with the next acknowledgement or at the stop)", "input", in.env.Name, "error", cerr.Error())
		// Try again soon: the offsets did not move on the broker.
		select {
		case in.wake <- struct{}{}:
		default:
		}
	}
}

// PartitionLag is one assigned partition's position.
type PartitionLag struct {
	Topic     string
	Partition int32
	// Committed is the committed offset (the next record the group reads).
	Committed int64
	// Lag is the records in the partition past Committed, as of the last
	// fetch's high watermark.
	Lag int64
}

// Lag returns the assigned partitions' lag, sorted.
func (in *Input) Lag() []PartitionLag {
	pts := in.assignedList()
	out := make([]PartitionLag, 0, len(pts))
	in.mu.Lock()
	cl := in.cl
	in.mu.Unlock()
	var group map[string]map[int32]kgo.EpochOffset
	for _, pt := range pts {
		c := pt.position()
		if c < 0 && cl != nil {
			// Nothing read since the assignment: the group's commit.
			if group == nil {
				group = cl.CommittedOffsets()
			}
			if eo, ok := group[pt.topic][pt.part]; ok {
				c = eo.Offset
			}
		}
		h := pt.hwm.Load()
		if c < 0 || h < 0 {
			continue
		}
		out = append(out, PartitionLag{Topic: pt.topic, Partition: pt.part, Committed: c, Lag: max(h-c, 0)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out
}
