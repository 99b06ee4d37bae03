// A go-mysql canal consumer for make bench: reads the binlog from FILE:4 until ROWS row changes of schema `bench`
// arrived, then prints {"rows": N, "seconds": S} as its last line.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/go-mysql-org/go-mysql/canal"
	"github.com/go-mysql-org/go-mysql/mysql"
)

type counter struct {
	canal.DummyEventHandler
	rows   atomic.Uint64
	wanted uint64
	done   chan struct{}
}

func (c *counter) OnRow(e *canal.RowsEvent) error {
	n := uint64(len(e.Rows))
	if e.Action == canal.UpdateAction {
		// Before and after images come as consecutive pairs.
		n /= 2
	}
	// Touch every value, as a consumer does.
	for _, row := range e.Rows {
		for range row {
		}
	}
	if c.rows.Add(n) >= c.wanted {
		select {
		case <-c.done:
		default:
			close(c.done)
		}
	}
	return nil
}

func (c *counter) String() string { return "bench" }

func main() {
	addr := flag.String("addr", "127.0.0.1:3306", "server address")
	user := flag.String("user", "root", "user")
	password := flag.String("password", "", "password")
	file := flag.String("file", "", "binlog file to start at (offset 4)")
	rows := flag.Uint64("rows", 0, "row changes to wait for")
	flag.Parse()

	cfg := canal.NewDefaultConfig()
	cfg.Addr = *addr
	cfg.User = *user
	cfg.Password = *password
	cfg.Flavor = mysql.MariaDBFlavor
	cfg.ServerID = uint32(3_800_000_000 + time.Now().UnixNano()%1_000_000)
	cfg.IncludeTableRegex = []string{`bench\..*`}
	// No initial mysqldump: stream the binlog only.
	cfg.Dump.ExecutionPath = ""

	started := time.Now()
	c, err := canal.NewCanal(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	h := &counter{wanted: *rows, done: make(chan struct{})}
	c.SetEventHandler(h)
	failed := make(chan error, 1)
	go func() { failed <- c.RunFrom(mysql.Position{Name: *file, Pos: 4}) }()
	select {
	case <-h.done:
	case err := <-failed:
		fmt.Fprintln(os.Stderr, "canal stopped:", err)
		os.Exit(1)
	case <-time.After(30 * time.Minute):
		fmt.Fprintln(os.Stderr, "timed out")
		os.Exit(1)
	}
	elapsed := time.Since(started).Seconds()
	c.Close()
	out, _ := json.Marshal(map[string]any{"rows": h.rows.Load(), "seconds": elapsed})
	fmt.Println(string(out))
}
