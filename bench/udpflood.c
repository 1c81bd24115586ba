/*
 * udpflood: a light DNS-over-UDP load generator (sendmmsg/recvmmsg).
 *
 * dnsperf spends about 6 us of CPU per query, so on one core it tops out near
 * 160k queries/s -- below what a C server answers.  This generator keeps a
 * fixed number of queries outstanding (like dnsperf -q) with one connected
 * UDP socket, sends and receives in batches of up to 64 datagrams per system
 * call, and does nothing else per query: patch the ID, stamp the send time.
 *
 *   udpflood SERVER PORT DATAFILE SECONDS OUTSTANDING [EDNS(0|1)] [TIMEOUT_MS] [BURST]
 *
 * DATAFILE has one "name TYPE" per line (TYPE = A or AAAA), like dnsperf's,
 * optionally followed by an IPv4 client subnet "a.b.c.d/len": that query then
 * carries an EDNS Client Subnet option (RFC 7871; needs EDNS=1).
 * BURST (default 64) caps how many queries one sendmmsg sends.
 * Queries cycle through it.  A query unanswered after TIMEOUT_MS (default
 * 1000) is counted lost and its slot reused.  Prints one line:
 *
 *   sent=N completed=N lost=N noerror=N seconds=S qps=Q avg_latency_us=L
 *
 * qps counts completed queries (answers received) per second of the run.
 * Build: gcc -O2 -o udpflood udpflood.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAXQ 16384
#define PKT 300
#define SLOTS 65536

typedef struct { unsigned char wire[PKT]; int len; } query_t;

static query_t queries[MAXQ];
static int nqueries;
static double sent_at[SLOTS]; /* 0 = slot free */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Encode "name TYPE" as a DNS query (ID 0, RD=0) with an optional OPT record,
   and in it an ECS option for ``subnet`` ("a.b.c.d/len", or NULL for none). */
static int encode(const char *name, const char *type, int edns, const char *subnet, query_t *q) {
    unsigned char *p = q->wire;
    memset(p, 0, 12);
    p[5] = 1;                  /* qdcount = 1 */
    if (edns) p[11] = 1;       /* arcount = 1 */
    p += 12;
    const char *label = name;
    while (*label) {
        const char *dot = strchr(label, '.');
        size_t n = dot ? (size_t)(dot - label) : strlen(label);
        if (n == 0 || n > 63 || (p - q->wire) + n + 1 > 255 + 12) return -1;
        *p++ = (unsigned char)n;
        memcpy(p, label, n);
        p += n;
        if (!dot) break;
        label = dot + 1;
    }
    *p++ = 0;
    int qtype = strcmp(type, "AAAA") == 0 ? 28 : 1;
    *p++ = 0; *p++ = (unsigned char)qtype;
    *p++ = 0; *p++ = 1;        /* class IN */
    if (edns) {                /* root, type 41, size 1232, ttl 0, rdlength 0 */
        static const unsigned char opt[] = {0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0};
        memcpy(p, opt, sizeof opt);
        p += sizeof opt;
        if (subnet) {          /* option 8: family 1, source len, scope 0, ceil(len/8) octets */
            char address[32];
            int len = 24;
            const char *slash = strchr(subnet, '/');
            size_t n = slash ? (size_t)(slash - subnet) : strlen(subnet);
            if (n >= sizeof address) return -1;
            memcpy(address, subnet, n);
            address[n] = 0;
            if (slash) len = atoi(slash + 1);
            struct in_addr in;
            if (len < 0 || len > 32 || inet_pton(AF_INET, address, &in) != 1) return -1;
            int octets = (len + 7) / 8;
            unsigned char *rdlength = p - 2;
            *p++ = 0; *p++ = 8; *p++ = 0; *p++ = (unsigned char)(4 + octets);
            *p++ = 0; *p++ = 1; *p++ = (unsigned char)len; *p++ = 0;
            memcpy(p, &in, octets);
            p += octets;
            rdlength[0] = 0; rdlength[1] = (unsigned char)(8 + octets);
        }
    }
    q->len = (int)(p - q->wire);
    return 0;
}

static int load(const char *path, int edns) {
    FILE *f = fopen(path, "r");
    if (!f) { perror(path); return -1; }
    char line[512], name[300], type[16], subnet[64];
    while (nqueries < MAXQ && fgets(line, sizeof line, f)) {
        int fields = sscanf(line, "%299s %15s %63s", name, type, subnet);
        if (fields < 2) continue;
        if (encode(name, type, edns, fields == 3 ? subnet : NULL, &queries[nqueries]) == 0) nqueries++;
    }
    fclose(f);
    return nqueries > 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s SERVER PORT DATAFILE SECONDS OUTSTANDING [EDNS] [TIMEOUT_MS] [BURST]\n", argv[0]);
        return 2;
    }
    double seconds = atof(argv[4]);
    long window = atol(argv[5]);
    int edns = argc > 6 ? atoi(argv[6]) : 1;
    double timeout = (argc > 7 ? atof(argv[7]) : 1000.0) / 1000.0;
    int burst = argc > 8 ? atoi(argv[8]) : BATCH;
    if (burst < 1 || burst > BATCH) { fprintf(stderr, "BURST must be 1..%d\n", BATCH); return 2; }
    if (window < 1 || window > 32768) { fprintf(stderr, "OUTSTANDING must be 1..32768\n"); return 2; }
    if (load(argv[3], edns) != 0) { fprintf(stderr, "no queries in %s\n", argv[3]); return 2; }

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) { fprintf(stderr, "bad address\n"); return 2; }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int buf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) { perror("socket"); return 1; }

    static unsigned char out[BATCH][PKT], in[BATCH][PKT];
    struct mmsghdr smsg[BATCH], rmsg[BATCH];
    struct iovec siov[BATCH], riov[BATCH];
    memset(smsg, 0, sizeof smsg);
    memset(rmsg, 0, sizeof rmsg);
    for (int i = 0; i < BATCH; i++) {
        siov[i].iov_base = out[i];
        smsg[i].msg_hdr.msg_iov = &siov[i];
        smsg[i].msg_hdr.msg_iovlen = 1;
        riov[i].iov_base = in[i];
        riov[i].iov_len = PKT;
        rmsg[i].msg_hdr.msg_iov = &riov[i];
        rmsg[i].msg_hdr.msg_iovlen = 1;
    }

    unsigned long long sent = 0, completed = 0, lost = 0, noerror = 0, oldest = 0;
    long outstanding = 0;
    double latency_sum = 0, start = now(), stop = start + seconds, t = start;
    int sending = 1;
    for (;;) {
        t = now();
        if (sending && t >= stop) { sending = 0; stop = t + timeout; }
        if (!sending && (outstanding == 0 || t >= stop)) break;
        /* Expire the oldest queries that waited longer than the timeout. */
        while (oldest < sent) {
            double s = sent_at[oldest % SLOTS];
            if (s != 0 && t - s < timeout) break;
            if (s != 0) { sent_at[oldest % SLOTS] = 0; lost++; outstanding--; }
            oldest++;
        }
        int n = 0;
        while (sending && outstanding + n < window && n < burst) {
            uint16_t id = (uint16_t)((sent + n) % SLOTS);
            if (sent_at[id] != 0) break; /* 65536 queries in flight: wait */
            query_t *q = &queries[(sent + n) % nqueries];
            memcpy(out[n], q->wire, q->len);
            out[n][0] = id >> 8; out[n][1] = id & 0xff;
            siov[n].iov_len = q->len;
            n++;
        }
        if (n > 0) {
            int done = sendmmsg(fd, smsg, n, 0);
            if (done < 0 && errno != EAGAIN && errno != ENOBUFS && errno != ECONNREFUSED) { perror("sendmmsg"); return 1; }
            for (int i = 0; i < done; i++) sent_at[(sent + i) % SLOTS] = t;
            if (done > 0) { sent += done; outstanding += done; }
        }
        int got = recvmmsg(fd, rmsg, BATCH, MSG_DONTWAIT, NULL);
        if (got <= 0) {
            if (outstanding >= window || !sending) {
                struct pollfd pfd = {.fd = fd, .events = POLLIN};
                poll(&pfd, 1, 1);
            }
            continue;
        }
        double r = now();
        for (int i = 0; i < got; i++) {
            if (rmsg[i].msg_len < 12) continue;
            uint16_t id = (uint16_t)((in[i][0] << 8) | in[i][1]);
            if (sent_at[id] == 0) continue; /* late answer to an expired query */
            latency_sum += r - sent_at[id];
            sent_at[id] = 0;
            outstanding--;
            completed++;
            if ((in[i][3] & 0x0f) == 0 && ((in[i][6] << 8) | in[i][7]) > 0) noerror++;
        }
    }
    lost += (unsigned long long)outstanding;
    double elapsed = seconds; /* queries were sent for exactly this long */
    printf("sent=%llu completed=%llu lost=%llu noerror=%llu seconds=%.3f qps=%.1f avg_latency_us=%.1f\n",
           sent, completed, lost, noerror, elapsed, completed / elapsed,
           completed ? latency_sum / completed * 1e6 : 0.0);
    return 0;
}
