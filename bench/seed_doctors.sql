-- 100,000 doctors with varied names, for bench/search_doctors.sh. The same text runs on SQLite
-- (sqlite3) and PostgreSQL (psql): 100 first names x 10 middle initials x 100 surnames.
-- NOW_MS is replaced by the script with the current time in milliseconds.
INSERT INTO users (id, phone, name, name_lower, role, phone_verified, doctor_verified, specialization,
                   created_at, updated_at)
WITH RECURSIVE
  m(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM m WHERE i < 9),
  f(i, v) AS (VALUES (0, 'Aarav'), (1, 'Vivaan'), (2, 'Aditya'), (3, 'Vihaan'), (4, 'Arjun'), (5, 'Sai'), (6, 'Reyansh'), (7, 'Ayaan'), (8, 'Krishna'), (9, 'Ishaan'), (10, 'Shaurya'), (11, 'Atharv'), (12, 'Advik'), (13, 'Pranav'), (14, 'Advait'), (15, 'Dhruv'), (16, 'Kabir'), (17, 'Ritvik'), (18, 'Aarush'), (19, 'Kayaan'), (20, 'Darsh'), (21, 'Veer'), (22, 'Rudra'), (23, 'Arnav'), (24, 'Yash'), (25, 'Rohan'), (26, 'Rahul'), (27, 'Amit'), (28, 'Vikram'), (29, 'Sanjay'), (30, 'Anil'), (31, 'Suresh'), (32, 'Rajesh'), (33, 'Manoj'), (34, 'Deepak'), (35, 'Nikhil'), (36, 'Karan'), (37, 'Varun'), (38, 'Siddharth'), (39, 'Ananya'), (40, 'Diya'), (41, 'Aadhya'), (42, 'Saanvi'), (43, 'Pari'), (44, 'Anika'), (45, 'Navya'), (46, 'Myra'), (47, 'Sara'), (48, 'Ira'), (49, 'Priya'), (50, 'Neha'), (51, 'Pooja'), (52, 'Kavya'), (53, 'Riya'), (54, 'Sneha'), (55, 'Meera'), (56, 'Asha'), (57, 'Lakshmi'), (58, 'Sunita'), (59, 'Anjali'), (60, 'Divya'), (61, 'Swati'), (62, 'Nisha'), (63, 'Rekha'), (64, 'Geeta'), (65, 'Shreya'), (66, 'Tanvi'), (67, 'Isha'), (68, 'Kiara'), (69, 'Aditi'), (70, 'Radha'), (71, 'Sita'), (72, 'Gauri'), (73, 'Uma'), (74, 'Vidya'), (75, 'Rani'), (76, 'Leela'), (77, 'Maya'), (78, 'Nandini'), (79, 'Jaya'), (80, 'Kamala'), (81, 'Usha'), (82, 'Padma'), (83, 'Savita'), (84, 'Hema'), (85, 'Indira'), (86, 'Farah'), (87, 'Zara'), (88, 'Ayesha'), (89, 'Fatima'), (90, 'Imran'), (91, 'Salman'), (92, 'Irfan'), (93, 'Yusuf'), (94, 'Omar'), (95, 'Tariq'), (96, 'Joseph'), (97, 'Thomas'), (98, 'Mathew'), (99, 'George')),
  l(i, v) AS (VALUES (0, 'Sharma'), (1, 'Verma'), (2, 'Gupta'), (3, 'Singh'), (4, 'Kumar'), (5, 'Patel'), (6, 'Shah'), (7, 'Mehta'), (8, 'Joshi'), (9, 'Desai'), (10, 'Iyer'), (11, 'Iyengar'), (12, 'Nair'), (13, 'Menon'), (14, 'Pillai'), (15, 'Reddy'), (16, 'Rao'), (17, 'Naidu'), (18, 'Chowdhury'), (19, 'Banerjee'), (20, 'Mukherjee'), (21, 'Chatterjee'), (22, 'Ghosh'), (23, 'Bose'), (24, 'Das'), (25, 'Sen'), (26, 'Dutta'), (27, 'Roy'), (28, 'Kapoor'), (29, 'Khanna'), (30, 'Malhotra'), (31, 'Chopra'), (32, 'Arora'), (33, 'Bhatia'), (34, 'Sethi'), (35, 'Anand'), (36, 'Saxena'), (37, 'Srivastava'), (38, 'Tiwari'), (39, 'Mishra'), (40, 'Pandey'), (41, 'Dubey'), (42, 'Tripathi'), (43, 'Shukla'), (44, 'Agarwal'), (45, 'Jain'), (46, 'Bansal'), (47, 'Goel'), (48, 'Mittal'), (49, 'Kulkarni'), (50, 'Deshpande'), (51, 'Patil'), (52, 'Pawar'), (53, 'Jadhav'), (54, 'Shinde'), (55, 'More'), (56, 'Gaikwad'), (57, 'Kamble'), (58, 'Naik'), (59, 'Sawant'), (60, 'Hegde'), (61, 'Shetty'), (62, 'Kamath'), (63, 'Bhat'), (64, 'Pai'), (65, 'Prabhu'), (66, 'Gowda'), (67, 'Murthy'), (68, 'Krishnan'), (69, 'Subramanian'), (70, 'Venkatesh'), (71, 'Raman'), (72, 'Swamy'), (73, 'Chandra'), (74, 'Khan'), (75, 'Ahmed'), (76, 'Ali'), (77, 'Hussain'), (78, 'Sheikh'), (79, 'Qureshi'), (80, 'Ansari'), (81, 'Siddiqui'), (82, 'Mirza'), (83, 'Baig'), (84, 'Fernandes'), (85, 'DSouza'), (86, 'Pereira'), (87, 'Rodrigues'), (88, 'Gomes'), (89, 'Varghese'), (90, 'Kurian'), (91, 'Abraham'), (92, 'Cherian'), (93, 'Gill'), (94, 'Sandhu'), (95, 'Dhillon'), (96, 'Grewal'), (97, 'Sidhu'), (98, 'Bedi'), (99, 'Ahuja')),
  d(k, name) AS (
    SELECT f.i * 1000 + l.i * 10 + m.i,
           'Dr. ' || f.v || ' ' || substr('ABCDEFGHKM', m.i + 1, 1) || '. ' || l.v
    FROM f, l, m)
SELECT 'seed' || k, '+9190' || (10000000 + k), name, lower(name), 'doctor', 1, k % 2,
       'General Medicine', NOW_MS, NOW_MS
FROM d;

-- The search windows of the seeded names (the server writes them itself for names it stores).
INSERT INTO doctor_name_grams (gram, user_id)
WITH RECURSIVE pos (user_id, name, i) AS (
    SELECT id, name_lower, 1 FROM users WHERE role = 'doctor' AND length(name_lower) >= 3
    UNION ALL
    SELECT user_id, name, i + 1 FROM pos WHERE i + 3 <= length(name)
)
SELECT DISTINCT substr(name, i, 3), user_id FROM pos WHERE true
ON CONFLICT DO NOTHING;
