/*-------------------------------------------------------------------------
 *
 * cluster.c
 *		On a Citus worker: who may log in.
 *
 * Citus opens its connections to the workers as the role running the
 * statement on the coordinator, so every role that reads distributed tables
 * can log in on the workers -- and could connect to one directly, past the
 * coordinator, where pii_guard's masking, limits and audit are decided.
 * With pii_guard.cluster_peer_cn set (on the workers), a role other than a
 * superuser is admitted only over TLS with a client certificate that the
 * server verified against its ssl_ca_file and whose common name is that
 * setting: the certificate the coordinator presents through
 * citus.node_conninfo (sslcert, sslkey), whose key a client does not have.
 * Everyone else is refused before the session starts (28000), whatever
 * pg_hba.conf says -- sessions and logical replication connections alike.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "libpq/auth.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "replication/walsender.h"
#include "utils/acl.h"

#include "pii_guard.h"

char	   *pii_guard_cluster_peer_cn = NULL;

/* Does this connection come from the cluster (the coordinator's certificate)? */
static bool
cluster_peer(Port *port)
{
#ifdef USE_SSL
	return port->ssl_in_use && port->peer_cert_valid && port->peer_cn != NULL &&
		strcmp(port->peer_cn, pii_guard_cluster_peer_cn) == 0;
#else
	return false;
#endif
}

/*
 * After authentication (ClientAuthentication_hook, in the transaction that
 * InitPostgres opens for it): refuse a role other than a superuser that did
 * not come from the cluster.  Physical replication connections (which run
 * no SQL) are left to pg_hba.conf; a logical one (replication=database)
 * runs SQL in the database like any session, and is checked.
 */
void
cluster_check_login(Port *port, int status)
{
	Oid			roleid;

	if (status != STATUS_OK || pii_guard_cluster_peer_cn == NULL ||
		pii_guard_cluster_peer_cn[0] == '\0' || (am_walsender && !am_db_walsender))
		return;
	roleid = get_role_oid(port->user_name, true);
	if ((OidIsValid(roleid) && superuser_arg(roleid)) || cluster_peer(port))
		return;
	ereport(FATAL,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("role \"%s\" may connect to this node only through the Citus coordinator",
					port->user_name),
			 errdetail("pii_guard.cluster_peer_cn is set: roles other than superusers are admitted only with the coordinator's client certificate."),
			 errhint("Connect to the coordinator.")));
}
