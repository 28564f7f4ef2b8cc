// Copied into Prism's internal/engine package by deploy/debug/prism-stage-dump/build.sh (a debugging build,
// never the cached engine). Unlocked reads of em.changedStages/em.injectedBundles are racy: counts only.
package engine

import (
	"fmt"
	"net/http"
	_ "net/http/pprof"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

var DebugStageNames sync.Map

// debugDumpLoop writes a compact view of every stage to $PRISM_DUMP_FILE every 10 s (debug build only).
func (em *ElementManager) debugDumpLoop() {
	if addr := os.Getenv("PRISM_PPROF_ADDR"); addr != "" {
		go http.ListenAndServe(addr, nil) // go tool pprof http://ADDR/debug/pprof/profile?seconds=10
	}
	path := os.Getenv("PRISM_DUMP_FILE")
	if path == "" {
		return
	}
	for {
		time.Sleep(10 * time.Second)
		var b strings.Builder
		fmt.Fprintf(&b, "=== %v pendingElements? changedStages=%d injected=%d\n", time.Now().Format(time.RFC3339), len(em.changedStages), len(em.injectedBundles))
		ids := make([]string, 0, len(em.stages))
		for id := range em.stages {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			ss := em.stages[id]
			ss.mu.Lock()
			name, _ := DebugStageNames.Load(id)
			fmt.Fprintf(&b, "%s [%v] in=%v out=%v pending=%d byKey=%d inprogressKeys=%v bundles=%d holds=%v\n", id, name, ss.input, ss.output, len(ss.pending), len(ss.pendingByKeys), ss.inprogressKeys, len(ss.inprogress), ss.watermarkHolds.counts)
			for bid, es := range ss.inprogress {
				fmt.Fprintf(&b, "   inprogress %s elements=%d minTs=%v keys=%v\n", bid, len(es.es), es.minTimestamp, ss.inprogressKeysByBundle[bid])
			}
			for k, dnt := range ss.pendingByKeys {
				data, timers := 0, 0
				for i := range dnt.elements {
					if dnt.elements[i].IsTimer() {
						timers++
					} else {
						data++
					}
				}
				top := "-"
				if len(dnt.elements) > 0 {
					e := dnt.elements[0]
					top = fmt.Sprintf("timer=%v ts=%v", e.IsTimer(), e.timestamp)
				}
				fmt.Fprintf(&b, "   key %q data=%d timers=%d top[%s] timersSet=%v\n", k, data, timers, top, dnt.timers)
			}
			ss.mu.Unlock()
		}
		f, _ := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		f.WriteString(b.String())
		f.Close()
	}
}
