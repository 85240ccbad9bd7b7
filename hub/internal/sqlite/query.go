package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/atelier-ml/atelier/hub"
)

// sqlOps maps filter operators to SQL; anything else is refused, so no
// operator text from a request reaches SQL.
var sqlOps = map[string]string{"=": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}

// where builds the WHERE clause of a run query with bound parameters.
func where(wsID, expID int64, conds []hub.Cond) (string, []any, error) {
	var b strings.Builder
	args := []any{wsID}
	b.WriteString(" WHERE r.workspace_id = ?")
	if expID != 0 {
		b.WriteString(" AND r.experiment_id = ?")
		args = append(args, expID)
	}
	for i, c := range conds {
		op, ok := sqlOps[c.Op]
		if !ok {
			return "", nil, fmt.Errorf("filter condition %d: operator %q: %w", i+1, c.Op, hub.ErrInvalid)
		}
		switch c.Field.Kind {
		case hub.FieldMetric:
			v, ok := c.Value.(float64)
			if !ok {
				return "", nil, fmt.Errorf("filter condition %d: %s compares with a number: %w", i+1, c.Field, hub.ErrInvalid)
			}
			b.WriteString(" AND EXISTS (SELECT 1 FROM latest_metrics m WHERE m.run_id = r.id AND m.name = ? AND m.value " + op + " ?)")
			args = append(args, c.Field.Name, v)
		case hub.FieldParam, hub.FieldTag:
			v, ok := c.Value.(string)
			if !ok {
				return "", nil, fmt.Errorf("filter condition %d: %s compares with a string: %w", i+1, c.Field, hub.ErrInvalid)
			}
			table := "params"
			if c.Field.Kind == hub.FieldTag {
				table = "tags"
			}
			b.WriteString(" AND EXISTS (SELECT 1 FROM " + table + " k WHERE k.run_id = r.id AND k.key = ? AND k.value " + op + " ?)")
			args = append(args, c.Field.Name, v)
		case hub.FieldStatus:
			v, ok := c.Value.(string)
			if !ok || (op != "=" && op != "!=") {
				return "", nil, fmt.Errorf("filter condition %d: status compares with = or != to a string: %w", i+1, hub.ErrInvalid)
			}
			b.WriteString(" AND r.status " + op + " ?")
			args = append(args, v)
		default:
			return "", nil, fmt.Errorf("filter condition %d: field %s cannot be filtered on: %w", i+1, c.Field, hub.ErrInvalid)
		}
	}
	return b.String(), args, nil
}

// ListRuns implements hub.RunStore. Ordering by a metric puts runs that
// lack the metric last; ties and the default order are newest first.
func (s *Store) ListRuns(ctx context.Context, ws string, q hub.RunQuery) ([]hub.Run, error) {
	if q.Top < 0 {
		return nil, fmt.Errorf("top %d: expected a positive number: %w", q.Top, hub.ErrInvalid)
	}
	var out []hub.Run
	err := s.read(ctx, func(tx *sql.Tx) error {
		wsID, err := workspaceID(ctx, tx, ws)
		if err != nil {
			return err
		}
		var expID int64
		if q.Experiment != "" {
			if expID, err = experimentID(ctx, tx, wsID, ws, q.Experiment); err != nil {
				return err
			}
		}
		cond, args, err := where(wsID, expID, q.Filter)
		if err != nil {
			return err
		}
		limit := int64(q.Top)
		if limit == 0 {
			limit = -1 // SQLite: no limit
		}
		order := hub.Order{Field: hub.Field{Kind: hub.FieldCreatedAt}, Desc: true}
		if q.OrderBy != nil {
			order = *q.OrderBy
		}
		dir := " ASC"
		if order.Desc {
			dir = " DESC"
		}
		var ids []int64
		switch order.Field.Kind {
		case hub.FieldMetric:
			// Walk the (name, value) index in order; CROSS JOIN keeps
			// latest_metrics the outer loop so LIMIT stops early.
			ids, err = queryIDs(ctx, tx, "SELECT r.id FROM latest_metrics o CROSS JOIN runs r"+cond+
				" AND o.run_id = r.id AND o.name = ? ORDER BY o.value"+dir+", o.run_id DESC LIMIT ?",
				append(append(args[:len(args):len(args)], order.Field.Name), limit)...)
			if err != nil {
				return err
			}
			if limit < 0 || int64(len(ids)) < limit {
				rest := limit
				if limit > 0 {
					rest = limit - int64(len(ids))
				}
				more, err := queryIDs(ctx, tx, "SELECT r.id FROM runs r"+cond+
					" AND NOT EXISTS (SELECT 1 FROM latest_metrics o WHERE o.run_id = r.id AND o.name = ?) ORDER BY r.id DESC LIMIT ?",
					append(append(args[:len(args):len(args)], order.Field.Name), rest)...)
				if err != nil {
					return err
				}
				ids = append(ids, more...)
			}
		case hub.FieldParam, hub.FieldTag:
			table := "params"
			if order.Field.Kind == hub.FieldTag {
				table = "tags"
			}
			ids, err = queryIDs(ctx, tx, "SELECT r.id FROM runs r LEFT JOIN "+table+" o ON o.run_id = r.id AND o.key = ?"+cond+
				" ORDER BY o.value IS NULL, o.value"+dir+", r.id DESC LIMIT ?",
				append(append([]any{order.Field.Name}, args...), limit)...)
		case hub.FieldCreatedAt:
			ids, err = queryIDs(ctx, tx, "SELECT r.id FROM runs r"+cond+" ORDER BY r.created_at"+dir+", r.id"+dir+" LIMIT ?",
				append(args, limit)...)
		default:
			return fmt.Errorf("order_by %s: expected metrics.NAME, params.NAME, tags.NAME or created_at: %w", order.Field, hub.ErrInvalid)
		}
		if err != nil {
			return err
		}
		out, err = loadRuns(ctx, tx, ws, ids)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return out, nil
}

func queryIDs(ctx context.Context, tx *sql.Tx, q string, args ...any) ([]int64, error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
