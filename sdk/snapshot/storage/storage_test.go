package storage

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/snapshot"
)

func TestOpenTimesOutOnALockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metadata.db")
	ms, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	_, err = Open(path, 100*time.Millisecond)
	if !errdefs.IsUnavailable(err) {
		t.Errorf("second Open of a held file = %v, want ErrUnavailable", err)
	}
}

func TestFailedUpdateRollsBack(t *testing.T) {
	ms, err := Open(filepath.Join(t.TempDir(), "metadata.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	_ = ms.Update(func(tx *Tx) error {
		if _, err := tx.Create("k", "", snapshot.KindActive, nil); err != nil {
			t.Fatal(err)
		}
		return errdefs.Unavailable("disk full")
	})
	err = ms.View(func(tx *Tx) error { _, err := tx.Get("k"); return err })
	if !errdefs.IsNotFound(err) {
		t.Errorf("Get after a rolled back Create = %v, want ErrNotFound", err)
	}
}

func TestParentChainAndIDs(t *testing.T) {
	ms, err := Open(filepath.Join(t.TempDir(), "metadata.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	var ids []string
	err = ms.Update(func(tx *Tx) error {
		parent := ""
		for _, name := range []string{"a", "b", "c"} {
			s, err := tx.Create(name+"-k", parent, snapshot.KindActive, nil)
			if err != nil {
				return err
			}
			id, err := tx.Commit(name, name+"-k", snapshot.Usage{Size: 1}, nil)
			if err != nil {
				return err
			}
			if id != s.ID {
				t.Errorf("Commit changed the ID %s -> %s", s.ID, id)
			}
			ids = append(ids, id)
			parent = name
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = ms.View(func(tx *Tx) error {
		s, err := tx.Get("c")
		if err != nil {
			t.Fatal(err)
		}
		if len(s.ParentIDs) != 2 || s.ParentIDs[0] != ids[1] || s.ParentIDs[1] != ids[0] {
			t.Errorf("ParentIDs of c = %v, want [%s %s]", s.ParentIDs, ids[1], ids[0])
		}
		return nil
	})
}

func TestParseFilters(t *testing.T) {
	for _, bad := range []string{"name", "==x", "size==3", "labels.==x"} {
		if _, err := ParseFilters([]string{bad}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseFilters(%q) = %v, want ErrInvalidArgument", bad, err)
		}
	}
	fs, err := ParseFilters([]string{"kind==committed", "labels.a==b"})
	if err != nil {
		t.Fatal(err)
	}
	if !Match(snapshot.Info{Kind: snapshot.KindCommitted, Labels: map[string]string{"a": "b"}}, fs) ||
		Match(snapshot.Info{Kind: snapshot.KindCommitted}, fs) {
		t.Error("Match disagrees with the filters")
	}
}
