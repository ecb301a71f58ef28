//! Realistic fake orders: Brazilian customer names (a pool where regulars order most), a product
//! catalogue with plausible prices, small quantities. Deterministic for a given seed.

use std::collections::HashSet;

use fake::faker::name::raw::{FirstName, LastName};
use fake::locales::PT_BR;
use fake::Fake;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use serde::Serialize;

/// The body of `POST /pedidos`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderBody {
    pub usuario: String,
    pub produto: String,
    pub quantidade: u32,
    /// Sent as a decimal string (`"199.90"`): exact, as the API prefers.
    #[serde(with = "rust_decimal::serde::str")]
    pub valor: Decimal,
}

/// A catalogue item: name, variants, unit price range in whole reais.
struct Item {
    name: &'static str,
    variants: &'static [&'static str],
    price: (u32, u32),
}

const CATALOGUE: &[Item] = &[
    Item {
        name: "Livro",
        variants: &[
            "Dom Casmurro",
            "Grande Sertão: Veredas",
            "O Cortiço",
            "Vidas Secas",
            "Capitães da Areia",
        ],
        price: (25, 120),
    },
    Item {
        name: "Fone de ouvido",
        variants: &["Bluetooth", "com fio", "com cancelamento de ruído"],
        price: (49, 1_500),
    },
    Item {
        name: "Smartphone",
        variants: &["128 GB", "256 GB", "512 GB"],
        price: (899, 8_999),
    },
    Item {
        name: "Notebook",
        variants: &["14\" i5 16 GB", "15\" i7 32 GB", "13\" ultrafino"],
        price: (2_499, 9_800),
    },
    Item {
        name: "Camiseta",
        variants: &["P", "M", "G", "GG"],
        price: (29, 149),
    },
    Item {
        name: "Tênis de corrida",
        variants: &["38", "40", "42", "44"],
        price: (199, 1_299),
    },
    Item {
        name: "Cafeteira",
        variants: &["elétrica", "italiana", "de cápsulas"],
        price: (89, 1_899),
    },
    Item {
        name: "Panela de pressão",
        variants: &["4,5 L", "6 L"],
        price: (99, 459),
    },
    Item {
        name: "Cadeira de escritório",
        variants: &["ergonômica", "gamer"],
        price: (399, 2_799),
    },
    Item {
        name: "Monitor",
        variants: &["24\" Full HD", "27\" 4K", "34\" ultrawide"],
        price: (699, 4_999),
    },
    Item {
        name: "Teclado mecânico",
        variants: &["ABNT2", "sem fio"],
        price: (149, 999),
    },
    Item {
        name: "Mouse",
        variants: &["sem fio", "gamer"],
        price: (39, 599),
    },
    Item {
        name: "Bicicleta",
        variants: &["aro 29", "elétrica", "infantil aro 16"],
        price: (599, 9_990),
    },
    Item {
        name: "Perfume",
        variants: &["50 ml", "100 ml"],
        price: (89, 899),
    },
    Item {
        name: "Café em grãos",
        variants: &["500 g", "1 kg"],
        price: (29, 149),
    },
    Item {
        name: "Geladeira",
        variants: &["frost free 400 L", "duplex 300 L"],
        price: (2_199, 7_999),
    },
    Item {
        name: "Relógio de luxo",
        variants: &["automático", "cronógrafo"],
        price: (6_000, 25_000),
    },
];

/// How often an order goes to the regular customers (the first fifth of the pool).
const REGULARS_SHARE: f64 = 0.8;

/// Generates orders from a seeded random source.
pub struct OrderGen {
    rng: ChaCha8Rng,
    users: Vec<String>,
}

impl OrderGen {
    /// A generator with a pool of `users` distinct customers (at least 1).
    pub fn new(seed: u64, users: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let users = customer_pool(&mut rng, users.max(1));
        Self { rng, users }
    }

    #[cfg(test)]
    pub fn users(&self) -> &[String] {
        &self.users
    }

    /// The next fake order.
    pub fn next_order(&mut self) -> OrderBody {
        let rng = &mut self.rng;
        let regulars = self.users.len().div_ceil(5);
        let user = if rng.random_bool(REGULARS_SHARE) {
            rng.random_range(0..regulars)
        } else {
            rng.random_range(0..self.users.len())
        };
        let item = &CATALOGUE[rng.random_range(0..CATALOGUE.len())];
        let variant = item.variants[rng.random_range(0..item.variants.len())];
        let quantidade = match rng.random_range(0..100) {
            0..60 => 1,
            60..90 => rng.random_range(2..=3),
            _ => rng.random_range(4..=10),
        };
        OrderBody {
            usuario: self.users[user].clone(),
            produto: format!("{} {}", item.name, variant),
            quantidade,
            valor: price(rng, item.price),
        }
    }

    /// A random UUID from the same seeded source (for records built without the API).
    pub fn uuid(&mut self) -> uuid::Uuid {
        uuid::Builder::from_random_bytes(self.rng.random()).into_uuid()
    }
}

/// A price in the range, shop-style: mostly ending in ,90 or ,99.
fn price(rng: &mut ChaCha8Rng, (lo, hi): (u32, u32)) -> Decimal {
    let reais = rng.random_range(lo..=hi);
    let cents = match rng.random_range(0..10) {
        0..6 => 90,
        6..8 => 99,
        8 => 0,
        _ => rng.random_range(1..100),
    };
    Decimal::new(i64::from(reais) * 100 + cents, 2)
}

/// `first.last` names in lower case, made unique with a number when they collide.
fn customer_pool(rng: &mut ChaCha8Rng, size: usize) -> Vec<String> {
    let mut seen = HashSet::with_capacity(size);
    let mut users = Vec::with_capacity(size);
    while users.len() < size {
        let first: String = FirstName(PT_BR).fake_with_rng(rng);
        let last: String = LastName(PT_BR).fake_with_rng(rng);
        let base = format!("{first}.{last}").to_lowercase().replace(' ', ".");
        let mut name = base.clone();
        let mut n = 2;
        while !seen.insert(name.clone()) {
            name = format!("{base}{n}");
            n += 1;
        }
        users.push(name);
    }
    users
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn same_seed_same_orders() {
        let mut a = OrderGen::new(42, 100);
        let mut b = OrderGen::new(42, 100);
        for _ in 0..200 {
            assert_eq!(a.next_order(), b.next_order());
        }
        let mut c = OrderGen::new(43, 100);
        let differ = (0..50).any(|_| a.next_order() != c.next_order());
        assert!(differ);
    }

    #[test]
    fn users_are_distinct_and_some_order_often() {
        let mut g = OrderGen::new(1, 200);
        let distinct: HashSet<&String> = g.users().iter().collect();
        assert_eq!(distinct.len(), 200);
        let mut per_user: HashMap<String, u32> = HashMap::new();
        for _ in 0..2_000 {
            *per_user.entry(g.next_order().usuario).or_default() += 1;
        }
        let max = per_user.values().max().copied().unwrap_or(0);
        assert!(
            max >= 10,
            "regular customers should order repeatedly, max {max}"
        );
        // Regulars (a fifth of the pool) get most orders.
        let regulars: u32 = g.users()[..40]
            .iter()
            .map(|u| per_user.get(u).copied().unwrap_or(0))
            .sum();
        assert!(regulars > 1_400, "regulars got {regulars} of 2000");
    }

    #[test]
    fn orders_satisfy_the_api_rules() {
        let mut g = OrderGen::new(7, 500);
        for _ in 0..5_000 {
            let o = g.next_order();
            assert!(
                shared::validation::check_text("usuario", &o.usuario).is_ok(),
                "{o:?}"
            );
            assert!(
                shared::validation::check_text("produto", &o.produto).is_ok(),
                "{o:?}"
            );
            assert!(
                shared::validation::check_quantidade(o.quantidade).is_ok(),
                "{o:?}"
            );
            assert!(shared::validation::check_valor(o.valor).is_ok(), "{o:?}");
            assert!((1..=10).contains(&o.quantidade));
        }
    }

    #[test]
    fn some_orders_are_expensive_enough_to_be_refused() {
        // fraud refuses a unit price over 10 000 or a total over 50 000 by default.
        let mut g = OrderGen::new(3, 50);
        let expensive = (0..5_000)
            .map(|_| g.next_order())
            .filter(|o| {
                o.valor > Decimal::from(10_000)
                    || o.valor * Decimal::from(o.quantidade) > Decimal::from(50_000)
            })
            .count();
        assert!(
            (10..1_000).contains(&expensive),
            "{expensive} expensive orders of 5000"
        );
    }

    #[test]
    fn body_is_the_api_json_with_an_exact_price() {
        let o = OrderBody {
            usuario: "ana.souza".into(),
            produto: "Livro Vidas Secas".into(),
            quantidade: 2,
            valor: Decimal::new(4990, 2),
        };
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            r#"{"usuario":"ana.souza","produto":"Livro Vidas Secas","quantidade":2,"valor":"49.90"}"#
        );
    }

    #[test]
    fn generated_uuids_are_version_4() {
        let mut g = OrderGen::new(9, 1);
        let id = g.uuid();
        assert_eq!(id.get_version_num(), 4);
        assert_ne!(id, g.uuid());
    }
}
