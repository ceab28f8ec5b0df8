/* Keeps Paho MQTT C's receive thread from its idle sleep.
 *
 * Paho 1.3.12's MQTTAsync receive thread waits up to 1 s for a readable
 * socket and, when that wait times out, sleeps 100 ms before waiting again
 * (MQTTAsync_cycle in MQTTAsyncUtils.c). A message that reaches the socket
 * during the sleep waits for it to end: up to 100 ms late, for any message
 * arriving 1.0-1.1 s (or 2.1-2.2 s, ...) after the previous packet.
 *
 * Paho's receive thread polls the sockets of every MQTTAsync client in the
 * process. The waker is one more client, connected over loopback to a
 * listener of its own on the sd-event loop, which answers the CONNECT and
 * then writes a PINGRESP every 500 ms: the poll never reaches its 1 s
 * timeout, so the sleep never starts. It costs two small loopback writes
 * a second and carries no data. */
#ifndef SRUP_PAHO_WAKER_H
#define SRUP_PAHO_WAKER_H

#include <stddef.h>

#include <systemd/sd-event.h>

struct paho_waker;

/* Listen on 127.0.0.1 (ephemeral port) and connect the waker client to it.
 * Returns 0, or -1 with detail filled in. */
int paho_waker_new(sd_event *loop, struct paho_waker **out, char *detail, size_t detail_len);
void paho_waker_free(struct paho_waker *w);

#endif
