<?php
/**
 * The plugin's own table: events that could not be handed to hookpump yet.
 *
 * @package Hookpump
 */

defined( 'ABSPATH' ) || exit;

/**
 * The outbox. A row is `pending` until hookpump accepts it (then it is deleted) or refuses it for
 * good (then it is kept as `rejected`, with hookpump's answer, for the site owner to see).
 * Its Idempotency-Key is unique: the same event queued twice is one row, and a row sent twice
 * (two flushes racing) is one message in hookpump.
 */
final class Hookpump_Outbox {

	const SCHEMA_VERSION = '1';

	const PENDING  = 'pending';
	const REJECTED = 'rejected';

	/** Seconds a flush owns the rows it claimed; after that another flush may take them. */
	const CLAIM_SECONDS = 120;

	/**
	 * Bounds of the table, so a hookpump that stays away cannot fill the site's database: at most
	 * this many pending rows, none older than this many days (the oldest go first, counted in
	 * Site Health), and rejected rows kept this many days for the site owner to see.
	 */
	const MAX_PENDING_ROWS   = 10000;
	const MAX_PENDING_DAYS   = 7;
	const REJECTED_KEEP_DAYS = 30;

	/** The table's name, with the site's prefix. */
	public static function table(): string {
		global $wpdb;
		return $wpdb->prefix . 'hookpump_outbox';
	}

	/** Creates or upgrades the table (dbDelta). */
	public static function install(): void {
		global $wpdb;
		require_once ABSPATH . 'wp-admin/includes/upgrade.php';
		$table   = self::table();
		$charset = $wpdb->get_charset_collate();
		dbDelta(
			"CREATE TABLE {$table} (
  id bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  key_hash char(64) NOT NULL,
  idempotency_key varchar(255) NOT NULL,
  event_type varchar(128) NOT NULL,
  message longtext NOT NULL,
  status varchar(20) NOT NULL DEFAULT 'pending',
  attempts int(10) unsigned NOT NULL DEFAULT 0,
  last_error text NULL,
  created_at datetime NOT NULL,
  claimed_until bigint(20) unsigned NOT NULL DEFAULT 0,
  claim_token char(32) NOT NULL DEFAULT '',
  PRIMARY KEY  (id),
  UNIQUE KEY key_hash (key_hash),
  KEY status_claim (status,claimed_until)
) {$charset};"
		);
		update_option( Hookpump_Options::DB_VERSION, self::SCHEMA_VERSION );
	}

	/** Drops the table (uninstall). */
	public static function drop(): void {
		global $wpdb;
		$wpdb->query( 'DROP TABLE IF EXISTS ' . self::table() ); // phpcs:ignore WordPress.DB.PreparedSQL.NotPrepared -- table name only.
	}

	/**
	 * Keeps an event for later. A second event with the same Idempotency-Key is ignored.
	 *
	 * @param array<string, mixed> $message         The MessageCreate body.
	 * @param string               $idempotency_key Its key.
	 * @param string               $error           Why it could not be sent now.
	 * @return bool Whether the event is in the outbox (new or already there).
	 */
	public static function add( array $message, string $idempotency_key, string $error ): bool {
		global $wpdb;
		$table = self::table();
		// INSERT IGNORE: the unique key_hash turns a repeated hook into one row.
		$done = $wpdb->query(
			$wpdb->prepare(
				"INSERT IGNORE INTO {$table} (key_hash, idempotency_key, event_type, message, status, attempts, last_error, created_at) VALUES (%s, %s, %s, %s, %s, 1, %s, %s)", // phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared
				hash( 'sha256', $idempotency_key ),
				$idempotency_key,
				(string) $message['event_type'],
				(string) wp_json_encode( $message ),
				self::PENDING,
				$error,
				current_time( 'mysql', true )
			)
		);
		if ( $done ) {
			self::prune();
		}
		return false !== $done;
	}

	/**
	 * The table's bounds (filter `hookpump_outbox_limits`).
	 *
	 * @return array{max_pending_rows: int, max_pending_days: int, rejected_keep_days: int}
	 */
	public static function limits(): array {
		$defaults = array(
			'max_pending_rows'   => self::MAX_PENDING_ROWS,
			'max_pending_days'   => self::MAX_PENDING_DAYS,
			'rejected_keep_days' => self::REJECTED_KEEP_DAYS,
		);
		/**
		 * Filters the outbox's bounds.
		 *
		 * @param array $limits max_pending_rows, max_pending_days, rejected_keep_days.
		 */
		$limits = (array) apply_filters( 'hookpump_outbox_limits', $defaults );
		return array_map( static fn( $value ) => max( 1, (int) $value ), array_merge( $defaults, array_intersect_key( $limits, $defaults ) ) );
	}

	/**
	 * Keeps the table within its bounds: pending rows past the age limit or over the cap are
	 * dropped, oldest first, and counted; rejected rows past their retention are purged.
	 *
	 * @return int Pending rows dropped.
	 */
	public static function prune(): int {
		global $wpdb;
		$table  = self::table();
		$limits = self::limits();
		$now    = time();
		// phpcs:disable WordPress.DB.PreparedSQL.InterpolatedNotPrepared -- table name only.
		$dropped = (int) $wpdb->query(
			$wpdb->prepare(
				"DELETE FROM {$table} WHERE status = %s AND created_at < %s",
				self::PENDING,
				gmdate( 'Y-m-d H:i:s', $now - $limits['max_pending_days'] * DAY_IN_SECONDS )
			)
		);
		$over = (int) $wpdb->get_var( $wpdb->prepare( "SELECT COUNT(*) FROM {$table} WHERE status = %s", self::PENDING ) ) - $limits['max_pending_rows'];
		if ( $over > 0 ) {
			$dropped += (int) $wpdb->query( $wpdb->prepare( "DELETE FROM {$table} WHERE status = %s ORDER BY id LIMIT %d", self::PENDING, $over ) );
		}
		$wpdb->query(
			$wpdb->prepare(
				"DELETE FROM {$table} WHERE status = %s AND created_at < %s",
				self::REJECTED,
				gmdate( 'Y-m-d H:i:s', $now - $limits['rejected_keep_days'] * DAY_IN_SECONDS )
			)
		);
		// phpcs:enable
		if ( $dropped > 0 ) {
			Hookpump_Options::add_dropped( $dropped );
		}
		return $dropped;
	}

	/**
	 * Takes up to $limit pending rows, oldest first, for one flush. Rows another flush holds are
	 * skipped, so two flushes at once (WP-Cron's lock is not airtight) send each row once.
	 *
	 * @param int $limit Most rows.
	 * @return array<int, object{id: string, idempotency_key: string, message: string, attempts: string}>
	 */
	public static function claim( int $limit ): array {
		global $wpdb;
		$table = self::table();
		$token = bin2hex( random_bytes( 16 ) );
		$now   = time();
		// phpcs:disable WordPress.DB.PreparedSQL.InterpolatedNotPrepared -- table name only.
		$wpdb->query(
			$wpdb->prepare(
				"UPDATE {$table} SET claim_token = %s, claimed_until = %d WHERE status = %s AND claimed_until < %d ORDER BY id LIMIT %d",
				$token,
				$now + self::CLAIM_SECONDS,
				self::PENDING,
				$now,
				$limit
			)
		);
		$rows = $wpdb->get_results(
			$wpdb->prepare( "SELECT id, idempotency_key, message, attempts FROM {$table} WHERE claim_token = %s ORDER BY id", $token )
		);
		// phpcs:enable
		return is_array( $rows ) ? $rows : array();
	}

	/**
	 * hookpump accepted the row: it is gone.
	 *
	 * @param int $id Row id.
	 */
	public static function delete( int $id ): void {
		global $wpdb;
		$wpdb->delete( self::table(), array( 'id' => $id ), array( '%d' ) );
	}

	/**
	 * The row stays pending for a later flush.
	 *
	 * @param int    $id        Row id.
	 * @param string $error     Why it failed this time.
	 * @param bool   $attempted Whether this row was sent (else it was claimed but not reached).
	 */
	public static function release( int $id, string $error, bool $attempted ): void {
		global $wpdb;
		$table = self::table();
		$wpdb->query(
			$wpdb->prepare( "UPDATE {$table} SET claimed_until = 0, claim_token = '', attempts = attempts + %d, last_error = %s WHERE id = %d", $attempted ? 1 : 0, $error, $id ) // phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared
		);
	}

	/**
	 * hookpump refused the row for good (4xx): kept, not sent again.
	 *
	 * @param int    $id    Row id.
	 * @param string $error hookpump's answer.
	 */
	public static function reject( int $id, string $error ): void {
		global $wpdb;
		$wpdb->update(
			self::table(),
			array(
				'status'        => self::REJECTED,
				'last_error'    => $error,
				'claimed_until' => 0,
				'claim_token'   => '',
			),
			array( 'id' => $id ),
			array( '%s', '%s', '%d', '%s' ),
			array( '%d' )
		);
	}

	/**
	 * Rows by status.
	 *
	 * @return array{pending: int, rejected: int}
	 */
	public static function counts(): array {
		global $wpdb;
		$table  = self::table();
		$counts = array(
			self::PENDING  => 0,
			self::REJECTED => 0,
		);
		$rows   = $wpdb->get_results( "SELECT status, COUNT(*) AS n FROM {$table} GROUP BY status" ); // phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared
		foreach ( (array) $rows as $row ) {
			$counts[ $row->status ] = (int) $row->n;
		}
		return $counts;
	}

	/** Whether any row waits to be sent (one indexed lookup: it runs after every successful send). */
	public static function has_pending(): bool {
		global $wpdb;
		$table = self::table();
		return (bool) $wpdb->get_var( $wpdb->prepare( "SELECT 1 FROM {$table} WHERE status = %s LIMIT 1", self::PENDING ) ); // phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared
	}

	/** Age in seconds of the oldest pending row, or null when none is pending. */
	public static function oldest_pending_age(): ?int {
		global $wpdb;
		$table  = self::table();
		$oldest = $wpdb->get_var( $wpdb->prepare( "SELECT MIN(created_at) FROM {$table} WHERE status = %s", self::PENDING ) ); // phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared
		return $oldest ? max( 0, time() - (int) strtotime( $oldest . ' UTC' ) ) : null;
	}
}
