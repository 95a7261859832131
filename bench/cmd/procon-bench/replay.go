package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// replayed counts the row changes a restart on slot would send again: it streams the slot from
// its confirmed position up to end and counts pgoutput's Insert, Update and Delete messages,
// never confirming anything. Zero means the contender confirmed every change it delivered.
func (b *bench) replayed(ctx context.Context, slot, pub, end string) (int64, error) {
	endLSN, err := pglogrepl.ParseLSN(end)
	if err != nil {
		return 0, err
	}
	u, err := url.Parse(b.env.DSN)
	if err != nil {
		return 0, err
	}
	q := u.Query()
	q.Set("replication", "database")
	q.Set("application_name", "procon-bench replay check")
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	conn, err := pgconn.Connect(ctx, u.String())
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	err = pglogrepl.StartReplication(ctx, conn, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + pub + "'"}})
	if err != nil {
		return 0, fmt.Errorf("start replication on %s: %w", slot, err)
	}
	var n int64
	for {
		msg, err := conn.ReceiveMessage(ctx)
		if err != nil {
			return n, err
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			switch m.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return n, err
				}
				if ka.ServerWALEnd >= endLSN {
					return n, nil
				}
				if ka.ReplyRequested {
					// Answer, or wal_sender_timeout ends a long decode; all positions 0:
					// nothing is confirmed.
					msg := make([]byte, 1+8*4+1)
					msg[0] = pglogrepl.StandbyStatusUpdateByteID
					conn.Frontend().Send(&pgproto3.CopyData{Data: msg})
					if err := conn.Frontend().Flush(); err != nil {
						return n, err
					}
				}
			case pglogrepl.XLogDataByteID:
				x, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return n, err
				}
				if len(x.WALData) > 0 {
					switch x.WALData[0] {
					case 'I', 'U', 'D':
						n++
					}
				}
			}
		case *pgproto3.ErrorResponse:
			return n, pgconn.ErrorResponseToPgError(m)
		case *pgproto3.CopyDone:
			return n, errors.New("replication ended")
		}
	}
}
